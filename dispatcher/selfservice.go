package dispatcher

import (
	"context"
	"time"

	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/rules"
)

// SelfServiceAnswer is what a self-service system is told about one
// citizen (POST /v1/self-service/exemption).
type SelfServiceAnswer struct {
	// DigitalPostExempt: the citizen is exempt from Digital Post.
	DigitalPostExempt bool
	// SelfServiceExempt: the exemption also releases the citizen from
	// the asking system's mandatory digital self-service (never in the
	// court and business contexts; rules.SelfServiceExempt).
	SelfServiceExempt bool
	// Since is when the exemption began; zero when not exempt.
	Since time.Time
}

// SelfService answers a self-service system of context c about the citizen
// c. A citizen postbud does not know is not exempt, and the answer is
// found the same way (one pseudonymisation, one store read), so it does not
// tell whether postbud knows the citizen.
func (d *Dispatcher) SelfService(ctx context.Context, cpr event.CPR, c rules.Context) (SelfServiceAnswer, error) {
	x, err := d.cfg.Store.ExemptionOf(ctx, d.cfg.Keyer.CitizenKey(cpr))
	if err != nil {
		return SelfServiceAnswer{}, err
	}
	return SelfServiceAnswer{DigitalPostExempt: x.Exempt, SelfServiceExempt: rules.SelfServiceExempt(c, x.Exempt),
		Since: x.Since}, nil
}
