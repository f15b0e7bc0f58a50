package rules

import "fmt"

// Context is the area a self-service system serves, as its operator
// configures it: it decides whether an exemption from Digital Post also
// releases the citizen from that system's mandatory digital self-service
// (lov om fravigelse fra obligatorisk digital selvbetjening).
type Context string

// The contexts.
const (
	// ContextPublic is the public authorities' self-service in general:
	// the exemption from Digital Post releases the citizen from it.
	ContextPublic Context = "public"
	// ContextCourt is the courts' case portals: not released.
	ContextCourt Context = "court"
	// ContextBusiness is business matters: not released.
	ContextBusiness Context = "business"
)

// Contexts returns every context, in the order documentation lists them.
func Contexts() []Context { return []Context{ContextPublic, ContextCourt, ContextBusiness} }

// ParseContext reads "public", "court" or "business".
func ParseContext(s string) (Context, error) {
	for _, c := range Contexts() {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("must be public, court or business, got %q", s)
}

// SelfServiceExempt reports whether a citizen is released from mandatory
// digital self-service in context c: only while exempt from Digital Post,
// and never in the courts' case portals or business matters. An unknown
// context is treated as not released, the strictest.
func SelfServiceExempt(c Context, digitalPostExempt bool) bool {
	return digitalPostExempt && c == ContextPublic
}
