package natsauth

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/flowvault/flowvault/workers"
)

// Credentials are one NATS user's: its signed JWT and its key pair. They
// print as "***"; File is the only way the seed leaves the process.
type Credentials struct {
	// User is the user's public key (the JWT's subject).
	User string
	// Expires is when the server stops accepting the credentials (zero:
	// never).
	Expires time.Time
	// InboxPrefix is the only inbox prefix the user may receive replies
	// under ("" for an engine, which may subscribe anywhere).
	InboxPrefix string

	jwt string
	kp  nkeys.KeyPair
}

// File renders the credentials as a standard NATS .creds file (the user
// JWT and the seed, jwt.FormatUserConfig), which every NATS client reads.
// The result holds the seed: write it only where it belongs (stdout, a
// 0600 file, an HTTP answer with Cache-Control: no-store) and wipe it.
func (c *Credentials) File() ([]byte, error) {
	seed, err := c.kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("nats credentials: %w", err)
	}
	defer clear(seed)
	b, err := jwt.FormatUserConfig(c.jwt, seed)
	if err != nil {
		return nil, fmt.Errorf("nats credentials: %w", err)
	}
	return b, nil
}

// Options are the NATS client options of a connection as this user: the
// JWT, the signature of the server's nonce, and the inbox prefix.
func (c *Credentials) Options() []nats.Option {
	opts := []nats.Option{nats.UserJWT(func() (string, error) { return c.jwt, nil }, c.kp.Sign)}
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	return opts
}

func (*Credentials) String() string               { return redacted }
func (*Credentials) GoString() string             { return redacted }
func (*Credentials) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (*Credentials) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (*Credentials) LogValue() slog.Value         { return slog.StringValue(redacted) }

// EventPublisherCredentials are those of the user EVENT tasks publish as:
// in the workers account, where the subscribers their credentials allow
// (WorkerSpec.Subscribe) receive the events, and allowed to publish
// anywhere but the namespaces of flowvault and the server, which the
// EVENT task checks first (workers.CheckEventSubject). It subscribes to
// nothing.
func (a *Authority) EventPublisherCredentials() (*Credentials, error) {
	return a.eventUser("flowvault-events", false)
}

// EventListenerCredentials are those of the user event handlers listen
// as: the publisher's mirror image, subscribing where it publishes and
// publishing nothing.
func (a *Authority) EventListenerCredentials() (*Credentials, error) {
	return a.eventUser("flowvault-event-handlers", true)
}

// eventUser issues a user of the workers account that publishes events
// (or, listening, subscribes to them) outside flowvault's and the
// server's namespaces, and does nothing else.
func (a *Authority) eventUser(name string, listen bool) (*Credentials, error) {
	return a.issue(a.workers, name, time.Time{}, func(string) jwt.Permissions {
		var p jwt.Permissions
		may, mayNot := &p.Pub, &p.Sub
		if listen {
			may, mayNot = &p.Sub, &p.Pub
		}
		may.Allow.Add(">")
		may.Deny.Add(workers.EventPublisherDeny...)
		mayNot.Deny.Add(">")
		return p
	})
}

// IssueWorker signs credentials for a worker of spec.TaskTypes: it may do
// what workers.WorkerPermissions allows and nothing else. The spec must
// be valid (WorkerSpec.Validate).
func (a *Authority) IssueWorker(spec WorkerSpec) (*Credentials, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	c, err := a.issue(a.workers, spec.Name, spec.Expires, func(user string) jwt.Permissions {
		wp := workers.WorkerPermissions(spec.TaskTypes, spec.Queues(), workers.InboxPrefix(user))
		var p jwt.Permissions
		p.Pub.Allow.Add(wp.Publish...)
		p.Pub.Allow.Add(workers.ProducerPermissions(spec.StartWorkflows, spec.Principal)...)
		p.Sub.Allow.Add(wp.Subscribe...)
		p.Sub.Allow.Add(spec.Subscribe...)
		if len(spec.Subscribe) > 0 {
			p.Sub.Deny.Add("> " + workers.EventHandlerQueues + ".>")
		}
		// A worker answers the engine's offers of tasks (the poll's
		// reply carries a reply subject of its own), once each, and only
		// messages delivered to it reach it: its inbox. Credentials that
		// take no task answer nothing: an event subscriber would answer
		// whatever request a worker aimed at its events' subjects, a
		// queue's announcement (acknowledging it) or an offer. Without
		// a response permission the server reads an empty allow list as
		// every subject, so those that publish nothing deny it all.
		switch {
		case len(spec.TaskTypes) > 0:
			p.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
		case len(p.Pub.Allow) == 0:
			p.Pub.Deny.Add(">")
		}
		return p
	})
	if err != nil {
		return nil, err
	}
	c.InboxPrefix = workers.InboxPrefix(c.User)
	return c, nil
}
