package workers

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/natsurl"
)

// inboxBase starts every worker's inbox prefix. It differs from the NATS
// default "_INBOX." so that no worker credential can be granted the
// default inbox space by accident.
const inboxBase = "_INBOX_"

// InboxPrefix is the inbox prefix of the NATS user whose public key is
// user: "_INBOX_<user>". flowvault's worker credentials let a worker
// subscribe only under InboxPrefix(user)+".>": take replies carry resolved
// secrets, so no worker may read another one's replies. A worker connects
// with this prefix (nats.CustomInboxPrefix; Connect and ConnectOptions set
// it).
func InboxPrefix(user string) string { return inboxBase + user }

// Permissions are the subjects a NATS user may publish and subscribe to.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// WorkerPermissions is everything a worker of taskTypes needs of NATS
// under the worker protocol, and nothing else: poll ends for those types;
// for each of their queues in domains ("" names the queue without
// domain), the take, poll and result subjects and the info, next-message
// and acknowledgement subjects of its consumer on the dispatch stream; and
// subscriptions under inboxPrefix.
// Consumers are not created by workers (the engine does), streams are not
// readable, and other types' queues are out of reach.
func WorkerPermissions(taskTypes, queues []string, inboxPrefix string) Permissions {
	var p Permissions
	stream := eventlog.Dispatch.Name
	for _, t := range taskTypes {
		p.Publish = append(p.Publish, PollEndSubject(t))
		for _, d := range queues {
			c := ConsumerName(t, d)
			p.Publish = append(p.Publish, TakeSubject(t, d), PollSubject(t, d), ResultSubject(t, d),
				"$JS.API.CONSUMER.INFO."+stream+"."+c,
				"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+c,
				"$JS.ACK."+stream+"."+c+".>")
		}
	}
	slices.Sort(p.Publish)
	p.Publish = slices.Compact(p.Publish)
	p.Subscribe = []string{inboxPrefix + ".>"}
	return p
}

// StartCommandPrefix is where workflows are started by publishing a
// Conductor StartWorkflowRequest: fv.cmd.start.<workflow> (engines only;
// the request names its creator) or fv.cmd.start.<workflow>.<principal>
// (producers: the subject names the creator, and a producer's credentials
// allow only its own principal).
const StartCommandPrefix = "fv.cmd.start."

// StartSubject is where principal publishes requests to start workflow.
func StartSubject(workflow, principal string) string {
	return StartCommandPrefix + eventlog.Token(workflow) + "." + eventlog.Token(principal)
}

// ProducerPermissions lets principal start each of workflows by
// publishing, as itself: the workflows' start subjects under its own name
// and nothing else.
func ProducerPermissions(workflows []string, principal string) []string {
	out := make([]string, 0, len(workflows))
	for _, w := range workflows {
		out = append(out, StartSubject(w, principal))
	}
	return out
}

// ConnectOptions are the NATS options of a connection authenticated by
// creds (a .creds file: user JWT and seed, as `flowvault
// worker-credentials` prints them): the credentials, and the inbox prefix
// they allow replies under.
func ConnectOptions(creds []byte) ([]nats.Option, error) {
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, fmt.Errorf("worker credentials: %w", err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		return nil, fmt.Errorf("worker credentials: %w", err)
	}
	user, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("worker credentials: %w", err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, fmt.Errorf("worker credentials: user JWT: %w", err)
	}
	if claims.Subject != user {
		return nil, errors.New("worker credentials: the JWT is not the seed's user")
	}
	return []nats.Option{
		nats.UserJWT(func() (string, error) { return token, nil }, kp.Sign),
		nats.CustomInboxPrefix(InboxPrefix(user)),
	}, nil
}

// Connect connects to NATS at url with worker credentials creds (see
// ConnectOptions), reconnecting for ever once connected, and logs the
// connection's asynchronous errors (a permissions violation, a slow
// consumer) through slog.Default(); opts come after, so they may add to
// them or override them (nats.MaxReconnects, nats.ErrorHandler).
func Connect(url string, creds []byte, opts ...nats.Option) (*nats.Conn, error) {
	copts, err := ConnectOptions(creds)
	if err != nil {
		return nil, err
	}
	// nats.go gives up after 60 attempts, 2 s apart: a server that takes
	// longer to come back (a restart refuses workers until its read models
	// have caught up) would leave the worker with a closed connection for
	// good. A worker has nothing better to do than wait for its server.
	// nats.go's own error handler writes to stderr, past the program's
	// logger and its format.
	copts = append(copts, nats.MaxReconnects(-1), nats.ErrorHandler(logAsyncError))
	nc, err := nats.Connect(url, append(copts, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", natsurl.Servers(url), natsurl.ConnectError(err, url))
	}
	return nc, nil
}

// logAsyncError logs an asynchronous error of a worker's connection. The
// default logger is read at each error: a program may set it after it
// connected.
func logAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	args := []any{logkey.Component, "worker", logkey.Err, err}
	if sub != nil {
		args = append(args, logkey.Subject, sub.Subject)
	}
	slog.Default().Error("NATS connection error", args...)
}

// checkInbox refuses a connection whose flowvault worker credentials allow
// replies only under a prefix the connection does not use: every request
// would time out on a permissions violation.
func checkInbox(nc *nats.Conn) error {
	if nc.Opts.UserJWT == nil {
		return nil
	}
	token, err := nc.Opts.UserJWT()
	if err != nil {
		return nil
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil
	}
	want := InboxPrefix(claims.Subject)
	if claims.Permissions.Sub.Allow.Contains(want+".>") && nc.Opts.InboxPrefix != want {
		return fmt.Errorf("worker: the connection's credentials allow replies only under %s: connect with workers.Connect, or add nats.CustomInboxPrefix(%q)", want, want)
	}
	return nil
}
