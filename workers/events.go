package workers

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// EventPublisherDeny are the subjects the engine's event publisher may
// not publish on, whatever an EVENT task's sink says: flowvault's own
// namespace and the NATS server's, whose imports the workers account
// holds. CheckEventSubject refuses them, and more, before any publish.
var EventPublisherDeny = []string{"fv.>", "$JS.>", "$KV.>", "$O.>", "$SYS.>", "_INBOX.>"}

// MaxEventSubject bounds a subject an EVENT task publishes on or an event
// handler listens to, in bytes. The NATS server closes a connection whose
// protocol line is past its max_control_line (4 KiB by default): one
// publish on a longer subject would end every engine's events, and, on a
// connection the log shares, its appends. NATS advises subjects far
// shorter still.
const MaxEventSubject = 1024

// EventHeader marks a message an EVENT task published; its value is the
// task's id. In the embedded server's workers account nothing else that
// reaches a subscriber carries it: a request's reply subject is the
// worker's choice, the server does not check it, and an engine's answer
// (or JetStream's, a queue's announcements to a pull) goes wherever it
// names, an event subject included, with the answerer's headers alone.
// A message on an event subject without it is no event.
const EventHeader = "Flowvault-Event-Task"

// EventHandlerQueues starts the queue group names in which the engines'
// event handlers listen (events.QueueGroup). Event subscribers'
// credentials may not join those groups: a member would take a share of
// the events away from the handlers.
const EventHandlerQueues = "flowvault.handlers"

// CheckEventSubject checks a subject an EVENT task publishes on or, with
// wildcards, one an event subscriber's credentials allow: tokens of
// printable characters, and nothing in flowvault's namespace (fv.…), the
// NATS server's ($…) or reply inboxes (_…), where a message would reach
// the engines, the server or another worker's replies. A pattern must
// name its first token, so that it cannot match those either.
func CheckEventSubject(subject string, wildcards bool) error {
	if subject == "" {
		return errors.New("no subject")
	}
	if len(subject) > MaxEventSubject {
		return fmt.Errorf("subject of %d bytes: at most %d", len(subject), MaxEventSubject)
	}
	toks := strings.Split(subject, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return fmt.Errorf("subject %q has an empty token", subject)
		// Unicode white space too: the server splits a subscribe
		// permission at any (strings.Fields) into a subject and a queue
		// group, so that credentials for ">\u00a0q" would allow ">".
		case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsSpace(r) }):
			return fmt.Errorf("subject %q has spaces or control characters", subject)
		case tok == "*" || tok == ">":
			switch {
			case !wildcards:
				return fmt.Errorf("subject %q: an event is published on a subject without wildcards", subject)
			case i == 0:
				return fmt.Errorf("subject %q: a pattern names its first token", subject)
			case tok == ">" && i != len(toks)-1:
				return fmt.Errorf("subject %q: > ends a pattern", subject)
			}
		}
	}
	if toks[0] == "fv" || strings.HasPrefix(subject, "$") || strings.HasPrefix(subject, "_") {
		return fmt.Errorf("subject %q is reserved (fv.…, $…, _…): use a subject of your own", subject)
	}
	return nil
}
