// Package fcm is the channel that pushes alerts to Android devices through
// Firebase Cloud Messaging (the FCM HTTP v1 API), using the Firebase Admin
// SDK (firebase.google.com/go/v4/messaging).
//
// Each citizen app ("digital-post-app", "e-boks", "mit.dk") is its own
// Firebase project with its own service account, so the Sender holds one
// messaging client per app and routes a token by channels.Address.App.
//
// A visible alert is a notification (title channels.Title, body
// channels.Headline) with android.collapse_key and android.notification.tag
// set to the letter's message id, so a duplicate replaces rather than
// stacks, and data {"message_id": ...}. A silent alert is a data-only
// message {"type": "badge", "badge": "N", "message_id": ...} collapsing
// under "badge". Neither carries a CPR number or anything of the letter.
//
// # Transport and authentication
//
// The SDK builds its endpoint from option.WithEndpoint when given (it is
// honoured by messaging in v4.19.0: messaging.NewClient takes the endpoint
// transport.NewHTTPClient returns and only falls back to
// https://fcm.googleapis.com/v1 when it is empty). The SDK would skip
// authentication entirely if handed an option.WithHTTPClient, so the Sender
// builds the authenticated transport itself with
// google.golang.org/api/transport/http.NewTransport over the configured
// base transport, from the service-account key, and hands the SDK an
// http.Client around it. The OAuth2 JWT-bearer token exchange thus always
// runs (against the key file's token_uri), and its token is cached and
// reused until it nears expiry.
//
// Between the SDK and that transport sits a guard that (1) ends a request
// when its context ends, because the token exchange under it is not bound
// to the request's context, and (2) notices a refused token exchange and
// stops the SDK from retrying it (the SDK retries every transport error
// four times, for about 7 s).
//
// # Errors
//
// Failures are classified with the SDK's helpers (messaging.IsUnregistered
// and friends, errorutils for the HTTP response and platform status):
//
//	UNREGISTERED, SENDER_ID_MISMATCH                 gone
//	INVALID_ARGUMENT about the registration token    gone
//	INVALID_ARGUMENT otherwise, other 4xx            permanent
//	QUOTA_EXCEEDED, 429                              throttled, ≥ 60 s
//	THIRD_PARTY_AUTH_ERROR, 401, 403, 404 (no FCM    misconfigured
//	  code), refused token exchange, unknown app
//	UNAVAILABLE, INTERNAL, 5xx, network, deadline    transient
//
// The channels.Error code is the FCM error code ("UNREGISTERED"), else the
// platform status ("PERMISSION_DENIED"). FCM's error message is kept, with
// the registration token and anything token-like cut out.
package fcm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"time"

	"cloud.google.com/go/auth/credentials"
	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"

	"github.com/digitalpost/postbud/channels"
)

// messagingScope is the OAuth2 scope a token needs to send with FCM.
const messagingScope = "https://www.googleapis.com/auth/firebase.messaging"

// pingTopic is the topic Ping validates a dry-run message against.
const pingTopic = "postbud-ping"

var (
	_ channels.Sender = (*Sender)(nil)
	_ channels.Pinger = (*Sender)(nil)
)

// Sender sends alerts through FCM. It is safe for concurrent use.
type Sender struct {
	apps    map[string]*app
	timeout time.Duration
	logger  *slog.Logger
	base    http.RoundTripper
	owned   bool // base was created here and is closed by Close
	now     func() time.Time
}

type app struct {
	name, project string
	client        *messaging.Client
}

// New returns a Sender for cfg. It reads and checks every app's
// service-account key, but contacts neither Google nor FCM.
func New(cfg Config, logger *slog.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{
		apps:    make(map[string]*app, len(cfg.Apps)),
		timeout: cfg.Timeout,
		logger:  logger.With("channel", string(channels.FCM)),
		now:     time.Now,
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		s.base = cfg.HTTPClient.Transport
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 100
		s.base, s.owned = t, true
	}
	// The token exchange goes through the same base transport, bounded by
	// the send timeout.
	authClient := &http.Client{Transport: s.base, Timeout: s.timeout}
	names := make([]string, 0, len(cfg.Apps))
	for name := range cfg.Apps {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		a := cfg.Apps[name]
		field := fmt.Sprintf("Apps[%q]", name)
		creds, err := a.credentials(field)
		if err != nil {
			return nil, err
		}
		// creds is checked to be a service-account key (App.credentials).
		ac, err := credentials.NewCredentialsFromJSON(credentials.ServiceAccount, creds, &credentials.DetectOptions{
			Scopes: []string{messagingScope}, Client: authClient})
		if err != nil {
			return nil, fmt.Errorf("fcm: %s: credentials: %w", field, err)
		}
		rt, err := htransport.NewTransport(context.Background(), s.base,
			option.WithAuthCredentials(ac),
			option.WithTelemetryDisabled(),
		)
		if err != nil {
			return nil, fmt.Errorf("fcm: %s: credentials: %w", field, err)
		}
		opts := []option.ClientOption{option.WithHTTPClient(&http.Client{Transport: &guard{next: rt}})}
		if cfg.Endpoint != "" {
			opts = append(opts, option.WithEndpoint(cfg.Endpoint))
		}
		fa, err := firebase.NewApp(context.Background(), &firebase.Config{ProjectID: a.ProjectID}, opts...)
		if err != nil {
			return nil, fmt.Errorf("fcm: %s: firebase app: %w", field, err)
		}
		mc, err := fa.Messaging(context.Background())
		if err != nil {
			return nil, fmt.Errorf("fcm: %s: messaging client: %w", field, err)
		}
		s.apps[name] = &app{name: name, project: a.ProjectID, client: mc}
	}
	return s, nil
}

// Send pushes a to the token to.Value through the Firebase project of
// to.App. The receipt's ProviderID is FCM's message name
// ("projects/p/messages/123").
func (s *Sender) Send(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, channels.Interrupted(fmt.Errorf("send fcm: %w", err))
	}
	if to.Channel != "" && to.Channel != channels.FCM {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "wrong_channel", fmt.Errorf("send fcm: address is for channel %q", to.Channel))
	}
	if to.Value == "" {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "empty_token", errors.New("send fcm: the registration token is empty"))
	}
	if a.Silent && a.Badge < 0 {
		return channels.Receipt{}, channels.Fail(channels.Permanent, "no_badge", errors.New("send fcm: a silent alert needs a badge count"))
	}
	ap, ok := s.apps[to.App]
	if !ok {
		return channels.Receipt{}, channels.Fail(channels.Misconfigured, "unknown_app", fmt.Errorf("send fcm: no Firebase project configured for app %q", to.App))
	}
	msg := s.message(to.Value, a)
	name, err := s.do(ctx, to.Value, func(ctx context.Context) (string, error) {
		return ap.client.Send(ctx, msg)
	})
	log := s.logger.With("app", ap.name, "message_id", a.MessageID, "delivery_id", a.DeliveryID)
	if err != nil {
		level := slog.LevelWarn
		if channels.KindOf(err) == channels.Misconfigured {
			level = slog.LevelError
		}
		log.Log(ctx, level, "fcm send failed", "kind", channels.KindOf(err).String(), "code", channels.CodeOf(err), "err", err)
		return channels.Receipt{}, fmt.Errorf("send fcm: %w", err)
	}
	log.Debug("fcm send accepted", "provider_id", name)
	return channels.Receipt{ProviderID: name}, nil
}

// Ping checks, for every app, that the service account obtains a token and
// may send for its project, by validating (FCM's dry run, nothing is
// delivered) a data message to a topic.
func (s *Sender) Ping(ctx context.Context) error {
	names := make([]string, 0, len(s.apps))
	for name := range s.apps {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		ap := s.apps[name]
		msg := &messaging.Message{Topic: pingTopic, Data: map[string]string{"type": "ping"}}
		if _, err := s.do(ctx, "", func(ctx context.Context) (string, error) {
			return ap.client.SendDryRun(ctx, msg)
		}); err != nil {
			errs = append(errs, fmt.Errorf("ping fcm app %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Close releases idle connections of the transport New created.
func (s *Sender) Close() error {
	if t, ok := s.base.(*http.Transport); ok && s.owned {
		t.CloseIdleConnections()
	}
	return nil
}

// do runs one SDK call under the send timeout, with a send state the guard
// reports into, and classifies its error. token is redacted from errors.
func (s *Sender) do(ctx context.Context, token string, call func(context.Context) (string, error)) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	st := &sendState{stop: stop}
	name, err := call(context.WithValue(ctx, sendStateKey{}, st))
	if err != nil {
		return "", classify(ctx, err, st, token)
	}
	return name, nil
}

// message renders a as an FCM message to token.
func (s *Sender) message(token string, a channels.Alert) *messaging.Message {
	data := map[string]string{}
	if a.MessageID != "" {
		data["message_id"] = a.MessageID
	}
	android := &messaging.AndroidConfig{Priority: "normal"}
	if a.Urgent {
		android.Priority = "high"
	}
	if !a.Expires.IsZero() {
		// Whole seconds, rounded up; an alert already past its expiry
		// goes with TTL 0: now or never.
		ttl := max(0, a.Expires.Sub(s.now()))
		ttl = min(MaxTTL, (ttl + time.Second - 1).Truncate(time.Second))
		android.TTL = &ttl
	}
	if a.Silent {
		data["type"] = "badge"
		data["badge"] = strconv.Itoa(a.Badge)
		android.CollapseKey = "badge"
		return &messaging.Message{Token: token, Data: data, Android: android}
	}
	android.CollapseKey = a.MessageID
	android.Notification = &messaging.AndroidNotification{Tag: a.MessageID}
	if a.Badge >= 0 {
		n := a.Badge
		android.Notification.NotificationCount = &n
	}
	return &messaging.Message{
		Token:        token,
		Data:         data,
		Notification: &messaging.Notification{Title: channels.Title(a), Body: channels.Headline(a)},
		Android:      android,
	}
}
