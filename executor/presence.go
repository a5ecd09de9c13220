package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/kvbucket"
	"github.com/flowvault/flowvault/internal/logkey"
)

// Whether the process that holds a system task is alive is a question
// the NATS system answers, not a file: each engine process (boot)
// announces itself with a key of its own in presenceBucket, written
// before it takes any task and refreshed every heartbeat. The bucket's
// TTL, which the NATS server applies by its own clock (no engine's
// clock, skewed or stepped, counts), removes the key of a process that
// stopped refreshing it; a clean stop deletes it. A task held by a
// process whose key is gone is taken back by any live engine
// (engine.Reclaim); one held by a process whose key is there is left to
// it, whatever engine id it shares. Takes recorded by older versions
// ("flowvault") name no process, and wait for their lease.
//
// The wire: the key is the process's boot id, its value the holder name
// its takes record (systemHolder). A clean stop deletes the key with a
// KV delete marker (header KV-Operation: DEL) that carries, when the
// process holds no system task (none taken and not yet reported, and no
// take can follow: it drains first), the header Fv-Held: none. Another
// engine that finds a process gone reads the key's last message from the
// leader: a marker saying so spares it the scan for that process's
// tasks; anything else (a plain delete, a key that lapsed by its TTL,
// the marker itself aged out, an error) has it scan. The marker carries
// the process's word only: older versions ignore it, and scan.

// presenceBucket is the key-value bucket of the engine processes
// running: one key each, its boot id, whose value is the holder name its
// takes record.
const presenceBucket = "FV_ENGINES"

// DefaultPresenceTTL is how long a process's presence outlives its last
// heartbeat (Config.PresenceTTL): how long a process paused (a stopped
// VM, a debugger), or cut from NATS, keeps its system tasks, and how long
// the tasks of one that died wait at most, after their take, for
// another engine, well inside engine.SystemTaskLease.
const DefaultPresenceTTL = 30 * time.Second

// heartbeats is how many heartbeats a process sends within the TTL: five
// may fail or come late before its presence lapses.
const heartbeats = 6

// aliveSubjectPrefix, followed by a boot id, is where that process
// answers (core NATS, engines' account): a restarted engine asks its
// earlier processes still present, and "no responders", the NATS
// server's word that no connection listens, tells the one that died
// from a copy of its data directory that runs.
const aliveSubjectPrefix = "fv.engines.alive."

// probeTimeout bounds the wait for an answer: a process that does not
// answer in time is taken as present (paused, slow), and its presence's
// TTL decides.
const probeTimeout = 2 * time.Second

// heldHeader, set to "none" on a clean stop's delete marker, says the
// process held no system task (see above).
const heldHeader = "Fv-Held"

// scanBudget bounds the workflows one pass reads; a scan that has more
// goes on at the next heartbeat.
const scanBudget = 2000

// presence is this process's presence and what it last saw of the
// others'.
type presence struct {
	kv  jetstream.KeyValue
	sub *nats.Subscription
	rev uint64 // the revision of this process's key
	// ttl is the bucket's as last read (followTTL), after which the
	// server removes a key not refreshed (0: never).
	ttl time.Duration
	// every is how often, in nanoseconds, this process refreshes its key
	// (heartbeatEvery): the heartbeat changes it, the loop's ticker
	// follows. Atomic, as tests read it, and heartbeat, beside the loop.
	every atomic.Int64
	beats int // heartbeats sent, the bucket's TTL read again every heartbeats-th
	// seen holds the processes present at the last listing: one missing
	// from the next has died or stopped, and a scan is due.
	seen map[string]bool
	// scanning: a scan is under way, at after in the due index.
	scanning bool
	after    Due
	// rescan asks for a scan at the next heartbeat (a reconnection: what
	// vanished meanwhile went unseen).
	rescan    atomic.Bool
	withdrawn atomic.Bool
}

// parseHolder returns the engine id and the boot a system take's holder
// names (systemHolder); ok is false for a holder that names no process
// (older versions' "flowvault", a worker's own name).
func parseHolder(holder string) (engineID, boot string, ok bool) {
	rest, found := strings.CutPrefix(holder, "flowvault/")
	if !found {
		return "", "", false
	}
	engineID, boot, found = strings.Cut(rest, "/")
	if !found || engineID == "" || !validBoot(boot) {
		return "", "", false
	}
	return engineID, boot, true
}

// validBoot reports whether boot can be a key of presenceBucket and a
// token of a subject.
func validBoot(boot string) bool {
	if boot == "" || len(boot) > 64 {
		return false
	}
	for _, c := range boot {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// departed returns the processes of seen missing from present, but for
// self: a process never takes back its own tasks.
func departed(seen, present map[string]bool, self string) []string {
	var gone []string
	for boot := range seen {
		if !present[boot] && boot != self {
			gone = append(gone, boot)
		}
	}
	return gone
}

// announce opens the bucket, writes this process's presence and answers
// on its alive subject, before the engine takes any task: a take whose
// holder another engine finds absent would be taken back.
func (e *Executor) announce(ctx context.Context) error {
	var (
		kv jetstream.KeyValue
		st jetstream.KeyValueStatus
	)
	err := e.log.WhileForming(ctx, "engines' presence bucket not made yet", func(ctx context.Context) (err error) {
		kv, err = kvbucket.Open(ctx, e.log.JetStream(), jetstream.KeyValueConfig{Bucket: presenceBucket,
			Description: "engine processes running: a key each, gone when its heartbeats stop",
			History:     1, TTL: e.cfg.PresenceTTL, Storage: jetstream.FileStorage, Replicas: e.log.Replicas()})
		if err == nil {
			st, err = kv.Status(ctx)
		}
		return err
	}, logkey.Stream, "KV_"+presenceBucket)
	if err != nil {
		return fmt.Errorf("engines' presence bucket: %w", err)
	}
	ttl := st.TTL()
	e.warnPresenceTTL(ttl)
	sub, err := e.log.Conn().Subscribe(aliveSubjectPrefix+e.boot, func(m *nats.Msg) { _ = m.Respond(nil) })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", aliveSubjectPrefix+e.boot, err)
	}
	rev, err := writeBucket(ctx, e.log, presenceBucket, func(ctx context.Context) (uint64, error) {
		return kv.Create(ctx, e.boot, []byte(e.holder))
	})
	if err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("announce this engine's process: %w", err)
	}
	e.presence = &presence{kv: kv, sub: sub, rev: rev, ttl: ttl, scanning: true}
	e.presence.every.Store(int64(heartbeatEvery(e.cfg.PresenceTTL, ttl)))
	return nil
}

// interval is how often this process refreshes its key.
func (p *presence) interval() time.Duration { return time.Duration(p.every.Load()) }

// heartbeatEvery is how often a process whose presence TTL is own
// refreshes its key in a bucket whose TTL is bucket (0: none): the
// server removes the key by the bucket's, which the engine that made the
// bucket chose, and a process that kept to a longer one of its own would
// lapse between its heartbeats, and lose its system tasks to the others.
func heartbeatEvery(own, bucket time.Duration) time.Duration {
	if bucket > 0 && bucket < own {
		return bucket / heartbeats
	}
	return own / heartbeats
}

// warnPresenceTTL says so when the presence bucket, as another engine
// made it, removes keys after another TTL than this engine's: engines
// sharing a server are to agree on it (Config.PresenceTTL). The bucket is
// not made again to this engine's, as then the last engine started would
// decide for all: the heartbeats keep within the shorter of the two
// (heartbeatEvery), and a longer one only has the tasks of a process
// that died wait longer for another engine, at most their lease.
func (e *Executor) warnPresenceTTL(bucket time.Duration) {
	var msg string
	switch own := e.cfg.PresenceTTL; {
	case bucket == own:
		return
	case bucket == 0:
		msg = "engines' presence bucket removes no key by age: the system tasks of a process that dies wait for their lease, not for this engine's presence TTL"
	case bucket < own:
		msg = "engines' presence bucket removes a key sooner than this engine's presence TTL: its heartbeats keep within the bucket's"
	default:
		msg = "engines' presence bucket removes a key later than this engine's presence TTL: the system tasks of a process that dies wait as long for another engine"
	}
	e.cfg.Logger.Warn(msg, logkey.Stream, "KV_"+presenceBucket, logkey.Duration, bucket, logkey.Want, e.cfg.PresenceTTL)
}

// heartbeat refreshes this process's presence. A key that is gone (the
// process was paused, or cut from NATS, past the TTL) is written again:
// the tasks it ran may have been taken back meanwhile, and their results
// here will be ignored, as an expired lease's are. A key at another
// revision than the process knows holds a write of its own whose answer
// was lost (stored after its timeout): the key is the process's alone,
// and is refreshed from that revision. Refused by the revision it knew,
// then made anew, every heartbeat failed until the TTL removed the key
// and others took back its tasks. Its writes are guarded as appends are:
// on a bucket whose store failed (a full disk) each is refused at once,
// where each waited out its timeout, a heartbeat's worth. The bucket's
// TTL, which may have changed, is read again when the key had lapsed and
// once a TTL (followTTL).
func (e *Executor) heartbeat(ctx context.Context) error {
	p := e.presence
	update := func(rev uint64) (uint64, error) {
		return writeBucket(ctx, e.log, presenceBucket, func(ctx context.Context) (uint64, error) {
			return p.kv.Update(ctx, e.boot, []byte(e.holder), rev)
		})
	}
	rev, err := update(p.rev)
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		var entry jetstream.KeyValueEntry
		if entry, err = p.kv.Get(ctx, e.boot); err == nil {
			rev, err = update(entry.Revision())
		}
	}
	lapsed := false
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err = writeBucket(ctx, e.log, presenceBucket, func(ctx context.Context) (uint64, error) {
			return p.kv.Create(ctx, e.boot, []byte(e.holder))
		})
		lapsed = err == nil
	}
	if err != nil {
		return err
	}
	p.rev = rev
	p.beats++
	if lapsed || p.beats%heartbeats == 0 {
		e.followTTL(ctx)
	}
	if lapsed {
		e.cfg.Logger.Warn("this engine's presence had lapsed (paused or cut from NATS longer than its TTL); other engines may have taken back its system tasks, whose results here are then ignored",
			logkey.Duration, p.ttl)
	}
	return nil
}

// followTTL reads the bucket's TTL again and heartbeats within it. It
// may change under a running process: an engine of an older version
// makes the bucket again at its start (CreateOrUpdateKeyValue), an
// operator edits it. Kept to the TTL read at its start, a process whose
// heartbeats came to be further apart than the bucket's TTL lapsed
// before each, and lost its system tasks to the others, for as long as
// it ran. The TTL is read when the key is found lapsed, and once a TTL
// (every heartbeats-th heartbeat) for a change that did not lapse it, not
// at each heartbeat: a round trip more each. A TTL shortened below the
// interval costs one lapse.
func (e *Executor) followTTL(ctx context.Context) {
	p := e.presence
	st, err := p.kv.Status(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.cfg.Logger.Warn("engines' presence bucket's TTL not read; this engine's heartbeats keep to the one last read",
				logkey.Stream, "KV_"+presenceBucket, logkey.Duration, p.ttl, logkey.Err, err)
		}
		return
	}
	ttl := st.TTL()
	if ttl == p.ttl {
		return
	}
	every := heartbeatEvery(e.cfg.PresenceTTL, ttl)
	e.cfg.Logger.Warn("engines' presence bucket's TTL changed while this engine ran: its heartbeats keep within the shorter of the bucket's and its own",
		logkey.Stream, "KV_"+presenceBucket, logkey.Duration, ttl, logkey.Was, p.ttl, logkey.Want, e.cfg.PresenceTTL, logkey.Every, every)
	p.ttl = ttl
	p.every.Store(int64(every))
}

// withdrawPresence deletes this process's presence at a clean stop: what it
// still holds, nothing runs any longer, and other engines take it back
// at once. A process that holds nothing says so (heldHeader), and the
// others skip the scan. It is called once the stop drains (draining): no
// take follows the count read here.
func (e *Executor) withdrawPresence() {
	p := e.presence
	if p == nil || p.withdrawn.Swap(true) {
		return
	}
	_ = p.sub.Unsubscribe()
	e.lifeMu.Lock()
	heldNothing := e.draining && e.holding == 0
	e.lifeMu.Unlock()
	// kv.Delete takes no header: the marker is published as it would.
	m := nats.NewMsg("$KV." + presenceBucket + "." + e.boot)
	m.Header.Set("KV-Operation", "DEL")
	if heldNothing {
		m.Header.Set(heldHeader, "none")
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if _, err := writeBucket(ctx, e.log, presenceBucket, func(ctx context.Context) (uint64, error) {
		ack, err := e.log.JetStream().PublishMsg(ctx, m)
		if err != nil {
			return 0, err
		}
		return ack.Sequence, nil
	}); err != nil {
		e.cfg.Logger.Warn("this engine's presence not withdrawn; other engines wait for its TTL", logkey.Err, err)
	}
}

// presenceLoop takes back at once the tasks of processes no longer
// present, then refreshes this process's presence every heartbeat, and
// takes back the tasks of those that vanished since the last. A
// heartbeat that keeps failing (its bucket's store failed on a full
// disk) is logged as every logs a pass that fails, not each time: the
// pass, which logs its own failures, runs all the same.
func (e *Executor) presenceLoop(ctx context.Context) {
	e.presencePass(ctx)
	e.every(ctx, e.presence.interval, "this engine's presence not refreshed", func(ctx context.Context) error {
		err := e.heartbeat(ctx)
		e.presencePass(ctx)
		return err
	})
}

// presencePass lists the processes present and, when one vanished since
// the last listing without saying it held nothing (or a scan is under
// way, or asked for), scans for the tasks of those absent.
func (e *Executor) presencePass(ctx context.Context) {
	p := e.presence
	present, err := e.listPresent(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.cfg.Logger.Warn("engines' presence not listed; their tasks wait for the next heartbeat", logkey.Err, err)
		}
		return
	}
	rescan := p.rescan.Swap(false)
	if gone := departed(p.seen, present, e.boot); rescan || len(gone) > 0 && !e.leftNothing(ctx, gone) {
		p.scanning, p.after = true, Due{} // from the start: what is due moved on
	}
	p.seen = present
	if p.scanning && e.sched != nil {
		p.after, p.scanning = e.reclaim(ctx, present, p.after)
	} else {
		p.scanning = false
	}
	if e.passed != nil {
		e.passed(present)
	}
}

// leftNothing reports whether every process of gone said, as it stopped,
// that it held no system task. Unsure is no.
func (e *Executor) leftNothing(ctx context.Context, gone []string) bool {
	for _, boot := range gone {
		present, heldNothing, err := e.presentNow(ctx, boot)
		if err != nil && ctx.Err() == nil {
			e.cfg.Logger.Warn("engine process's withdrawal not read; its tasks are looked for", logkey.Err, err)
		}
		if err != nil || present || !heldNothing {
			return false
		}
	}
	return true
}

// listPresent returns the boots of the processes present.
func (e *Executor) listPresent(ctx context.Context) (map[string]bool, error) {
	l, err := e.presence.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Stop() }()
	present := map[string]bool{}
	for k := range l.Keys() {
		present[k] = true
	}
	return present, ctx.Err()
}

// processGone reports whether the process boot of engine engineID is
// gone: absent from the bucket as its stream's leader has it, or, for
// an earlier process of this engine still present (a restart before its
// TTL ran out), with no connection listening on its alive subject. A
// process of another engine is present until its TTL runs out: "no
// responders" is also what a live process whose connection flaps gets,
// and only this engine's earlier processes are likely to have died
// while present. Anything unsure (an error, no answer) is present.
func (e *Executor) processGone(ctx context.Context, listed map[string]bool, engineID, boot string) bool {
	if !listed[boot] {
		// Listed absent: asked again, of the leader, since a process that
		// started after the listing may have taken the task since.
		present, _, err := e.presentNow(ctx, boot)
		if err != nil {
			if ctx.Err() == nil {
				e.cfg.Logger.Warn("engine process's presence not read; its tasks wait", logkey.Err, err)
			}
			return false
		}
		if !present {
			return true
		}
	}
	if engineID != e.cfg.EngineID {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := e.log.Conn().RequestWithContext(pctx, aliveSubjectPrefix+boot, nil)
	return errors.Is(err, nats.ErrNoResponders)
}

// presentNow reads boot's key from the bucket's stream leader: a direct
// get (kv.Get) may be answered by a replica behind it, which may not
// have the key of a process that just started. A process absent whose
// clean stop said it held no system task is heldNothing.
func (e *Executor) presentNow(ctx context.Context, boot string) (present, heldNothing bool, err error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": "$KV." + presenceBucket + "." + boot})
	if err != nil {
		return false, false, err
	}
	m, err := e.log.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+presenceBucket, req)
	if err != nil {
		return false, false, err
	}
	var resp struct {
		Error *struct {
			ErrCode     jetstream.ErrorCode `json:"err_code"`
			Description string              `json:"description"`
		} `json:"error"`
		Message *struct {
			Hdrs []byte `json:"hdrs"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return false, false, fmt.Errorf("engine presence: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == jetstream.JSErrCodeMessageNotFound:
		return false, false, nil // lapsed, or its marker aged out
	case resp.Error != nil:
		return false, false, fmt.Errorf("engine presence: %s", resp.Error.Description)
	case resp.Message == nil:
		return false, false, errors.New("engine presence: empty answer")
	}
	if len(resp.Message.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Hdrs)
		if err != nil {
			return false, false, fmt.Errorf("engine presence: %w", err)
		}
		if h.Get("KV-Operation") != "" { // deleted at a clean stop, or purged
			return false, h.Get("KV-Operation") == "DEL" && h.Get(heldHeader) == "none", nil
		}
	}
	return true, false, nil
}
