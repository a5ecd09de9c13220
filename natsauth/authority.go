// Package natsauth closes the embedded NATS server: decentralized JWT
// authentication with an operator and accounts derived from the master
// key, the engine's own user, and worker users whose permissions cover
// only their task types.
//
// Accounts. Engines connect to the flowvault account, where every stream
// lives. Workers and producers connect to the workers account, which
// imports only the worker protocol's subjects as services. Within one
// account a request's reply subject is the requester's choice, and the
// replier (an engine, the JetStream API) publishes there with its own
// rights: a worker naming a stream's subject as its reply would have
// written into that stream (a start request as anyone, a record in a
// workflow's log). Across a service import the server maps each reply to
// a subject of its own, so nothing a worker names reaches the flowvault
// account but the requests themselves.
//
// Key derivation. The operator, the accounts and the system account are
// nkeys whose seeds are derived from
// the master key with HKDF-SHA256 under distinct info strings (see
// OperatorInfo, AccountInfo, SystemAccountInfo). Every engine holding the
// master key derives the same keys, so engines sharing a log share an
// account, and no new secret is written to disk. User keys are random and
// exist only in the credentials they are issued in (engines mint their
// own at every start and keep them in memory).
//
// The server trusts the operator and resolves the accounts from memory
// (server.MemAccResolver), preloaded with their JWTs. The workers account
// admits no connection until Admit gives it the revocation list that the
// log holds (see Ledger): credentials revoked before a restart must not
// work for a moment after it.
package natsauth

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/flowvault/flowvault/eventlog"
)

// HKDF info strings of the derived nkeys. They are part of the on-disk
// format: the account's public key names the directory its JetStream data
// lives in. Never change one.
const (
	OperatorInfo       = "flowvault/nats/operator/v1"
	AccountInfo        = "flowvault/nats/account/v1"
	SystemAccountInfo  = "flowvault/nats/system-account/v1"
	WorkersAccountInfo = "flowvault/nats/workers-account/v1"
)

// KeyDeriver derives purpose-bound 32-byte keys from the master key.
// *secrets.MasterKey implements it.
type KeyDeriver interface {
	DeriveKey(info string) ([]byte, error)
}

// Authority is the operator and the flowvault account of the embedded
// server: it configures the server and signs user JWTs. It is safe for
// concurrent use and prints as "***".
type Authority struct {
	// op signs the workers account's JWT again with each revocation
	// list.
	op         nkeys.KeyPair
	operator   *jwt.OperatorClaims
	account    nkeys.KeyPair
	accountKey string
	accountJWT string
	workers    nkeys.KeyPair
	workersKey string
	// workersJWT is the workers account closed: every server starts so.
	workersJWT string
	systemKey  string
	systemJWT  string

	mu sync.Mutex
	// workerConns bounds the workers account's connections once it is
	// open (LimitWorkerConnections); 0: no bound of its own.
	workerConns int64
	resolver    *server.MemAccResolver
}

// New derives the operator and accounts from the master key and signs
// their JWTs. It keeps the key pairs of the accounts, which sign users,
// and the operator's, which signs the workers account again with each
// revocation list.
func New(master KeyDeriver) (_ *Authority, err error) {
	var derived []nkeys.KeyPair
	defer func() {
		if err != nil {
			for _, kp := range derived {
				kp.Wipe()
			}
		}
	}()
	keys := make([]nkeys.KeyPair, 4)
	for i, k := range []struct {
		prefix nkeys.PrefixByte
		info   string
	}{
		{nkeys.PrefixByteOperator, OperatorInfo}, {nkeys.PrefixByteAccount, AccountInfo},
		{nkeys.PrefixByteAccount, WorkersAccountInfo}, {nkeys.PrefixByteAccount, SystemAccountInfo},
	} {
		if keys[i], err = derive(master, k.prefix, k.info); err != nil {
			return nil, err
		}
		derived = append(derived, keys[i])
	}
	op, acc, wrk, sys := keys[0], keys[1], keys[2], keys[3]
	defer sys.Wipe()
	a := &Authority{op: op, account: acc, workers: wrk}
	if err := a.sign(op, sys); err != nil {
		return nil, err
	}
	return a, nil
}

// derive makes the nkey of one purpose.
func derive(master KeyDeriver, prefix nkeys.PrefixByte, info string) (nkeys.KeyPair, error) {
	raw, err := master.DeriveKey(info)
	if err != nil {
		return nil, fmt.Errorf("nats keys: %w", err)
	}
	defer clear(raw)
	kp, err := nkeys.FromRawSeed(prefix, raw)
	if err != nil {
		return nil, fmt.Errorf("nats keys: %w", err)
	}
	return kp, nil
}

// sign issues the operator JWT and, under the operator, the JWTs of the
// flowvault account (JetStream without limits, no bearer users) and of
// the system account the server needs in operator mode (no users).
func (a *Authority) sign(op, sys nkeys.KeyPair) error {
	opKey, err := op.PublicKey()
	if err != nil {
		return err
	}
	if a.accountKey, err = a.account.PublicKey(); err != nil {
		return err
	}
	if a.systemKey, err = sys.PublicKey(); err != nil {
		return err
	}
	oc := jwt.NewOperatorClaims(opKey)
	oc.Name = "flowvault"
	oc.SystemAccount = a.systemKey
	token, err := oc.Encode(op)
	if err != nil {
		return fmt.Errorf("operator jwt: %w", err)
	}
	if a.operator, err = jwt.DecodeOperatorClaims(token); err != nil {
		return fmt.Errorf("operator jwt: %w", err)
	}
	if a.workersKey, err = a.workers.PublicKey(); err != nil {
		return err
	}
	ac := jwt.NewAccountClaims(a.accountKey)
	ac.Name = "flowvault"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit,
		Streams: jwt.NoLimit, Consumer: jwt.NoLimit, MaxAckPending: jwt.NoLimit}
	ac.Limits.DisallowBearer = true
	for _, svc := range workerServices {
		ac.Exports.Add(&jwt.Export{Name: svc.name, Subject: jwt.Subject(svc.subject), Type: jwt.Service,
			ResponseType: svc.response, ResponseThreshold: svc.threshold})
	}
	if a.accountJWT, err = ac.Encode(op); err != nil {
		return fmt.Errorf("account jwt: %w", err)
	}
	if a.workersJWT, _, err = a.signWorkers(op, nil, false, 0); err != nil {
		return err
	}
	sc := jwt.NewAccountClaims(a.systemKey)
	sc.Name = "SYS"
	sc.Limits.DisallowBearer = true
	if a.systemJWT, err = sc.Encode(op); err != nil {
		return fmt.Errorf("system account jwt: %w", err)
	}
	return nil
}

// signWorkers signs the workers account's JWT: closed (no connection
// admitted) or open, to at most conns connections (0: no bound of the
// account's), refusing the users in revoked (public key: JWTs issued up
// to that Unix second).
func (a *Authority) signWorkers(op nkeys.KeyPair, revoked map[string]int64, open bool, conns int64) (string, *jwt.AccountClaims, error) {
	wc := jwt.NewAccountClaims(a.workersKey)
	wc.Name = "flowvault-workers"
	wc.Limits.DisallowBearer = true
	switch {
	case !open:
		wc.Limits.Conn = 0
	case conns > 0:
		// The engines connect to the server too (in-process ones count
		// against its MaxConn): the workers must leave them room.
		wc.Limits.Conn = conns
	}
	for _, svc := range workerServices {
		wc.Imports.Add(&jwt.Import{Name: svc.name, Subject: jwt.Subject(svc.subject), Account: a.accountKey, Type: jwt.Service, Share: svc.share})
	}
	for user, upTo := range revoked {
		wc.RevokeAt(user, time.Unix(upTo, 0))
	}
	token, err := wc.Encode(op)
	if err != nil {
		return "", nil, fmt.Errorf("workers account jwt: %w", err)
	}
	claims, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return "", nil, fmt.Errorf("workers account jwt: %w", err)
	}
	return token, claims, nil
}

// Admit opens the workers account of ns, the server a was configured
// into, with revoked as its revocation list (public key: JWTs issued up
// to that Unix second are refused; Ledger.Revoked): connections are
// admitted from then on, except those of revoked users, and the live
// connections of revoked users are closed. Each call replaces the list.
func (a *Authority) Admit(ns *server.Server, revoked map[string]int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	token, claims, err := a.signWorkers(a.op, revoked, true, a.workerConns)
	if err != nil {
		return err
	}
	if a.resolver == nil {
		return errors.New("admit workers: the server was not configured by this authority")
	}
	if err := a.resolver.Store(a.workersKey, token); err != nil {
		return fmt.Errorf("admit workers: %w", err)
	}
	acc, err := ns.LookupAccount(a.workersKey)
	if err != nil {
		return fmt.Errorf("admit workers: %w", err)
	}
	ns.UpdateAccountClaims(acc, claims)
	return nil
}

// LimitWorkerConnections bounds the connections the workers account
// admits, from the next Admit on, to n (0: no bound of the account's, only
// the server's MaxConn). The server's MaxConn counts every connection, the
// engines' too: a bound below it leaves the engines room to connect when
// workers, or anyone who holds a worker's credentials, open as many as
// they may. Past it the server refuses a worker's connection with
// "maximum account active connections exceeded".
func (a *Authority) LimitWorkerConnections(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.workerConns = int64(max(n, 0))
}

// workerServices are what the workers account imports from the flowvault
// account: the worker protocol (docs/worker-protocol.md) and starting
// workflows by publishing, each a service, so that every reply is the
// server's to route. User permissions narrow them to a worker's types.
var workerServices = []struct {
	name, subject string
	response      jwt.ResponseType
	threshold     time.Duration
	// share: the server tells the engine who sent each request (the
	// Nats-Request-Info header, with the user's public key): a take
	// records who received the task's secrets.
	share bool
}{
	{"take", "fv.engine.take.>", jwt.ResponseTypeSingleton, 0, true},
	// A result may carry the poll for its worker's next task, taken as
	// whoever sent the result.
	{"result", "fv.engine.result.>", jwt.ResponseTypeSingleton, 0, true},
	{"poll", "fv.engine.poll.>", jwt.ResponseTypeSingleton, 0, true},
	{"poll end", "fv.engine.pollend.>", jwt.ResponseTypeSingleton, 0, false},
	{"queue info", "$JS.API.CONSUMER.INFO." + eventlog.Dispatch.Name + ".>", jwt.ResponseTypeSingleton, 0, false},
	// A pull is answered by up to a batch of messages and status
	// messages until it expires.
	{"queue pull", "$JS.API.CONSUMER.MSG.NEXT." + eventlog.Dispatch.Name + ".>", jwt.ResponseTypeStream, 5 * time.Minute, false},
	{"queue ack", "$JS.ACK." + eventlog.Dispatch.Name + ".>", jwt.ResponseTypeSingleton, 0, false},
	// No user may ask it (see workers.WorkerPermissions), but an account
	// without JetStream that does not import it gets the server's own
	// $JS.API.> answers, which would shadow the imports above.
	{"account info", "$JS.API.INFO", jwt.ResponseTypeSingleton, 0, false},
	// Producers' start subjects name the workflow and the principal
	// (workers.StartSubject); the engines' own, without principal, are
	// not imported. Shared: the engine that stores a start refuses
	// revoked or expired credentials.
	{"start", "fv.cmd.start.*.*", jwt.ResponseTypeSingleton, 0, true},
}

// Account is the public key of the flowvault account.
func (a *Authority) Account() string { return a.accountKey }

// ConfigureServer puts o in operator mode: the operator is trusted and the
// accounts are resolved from memory. Clients must then present a user
// JWT signed by an account; anonymous connections are refused, and so is
// every worker until Admit opens the workers account.
func (a *Authority) ConfigureServer(o *server.Options) error {
	if o.Username != "" || o.Authorization != "" || len(o.Users) > 0 || len(o.Nkeys) > 0 {
		return errors.New("nats operator mode: the server has other authentication configured")
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(a.accountKey, a.accountJWT); err != nil {
		return fmt.Errorf("nats account resolver: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := resolver.Store(a.workersKey, a.workersJWT); err != nil {
		return fmt.Errorf("nats account resolver: %w", err)
	}
	if err := resolver.Store(a.systemKey, a.systemJWT); err != nil {
		return fmt.Errorf("nats account resolver: %w", err)
	}
	o.TrustedOperators = []*jwt.OperatorClaims{a.operator}
	o.SystemAccount = a.systemKey
	o.AccountResolver = resolver
	a.resolver = resolver
	return nil
}

// EngineOptions authenticate an engine's connection: a new user with
// every permission of the account, which lives only in this process.
func (a *Authority) EngineOptions() ([]nats.Option, error) {
	c, err := a.EngineCredentials()
	if err != nil {
		return nil, err
	}
	return c.Options(), nil
}

// EngineCredentials are the credentials of a new user with every
// permission of the account and no expiry: an engine's, or a test's that
// must read every stream.
func (a *Authority) EngineCredentials() (*Credentials, error) {
	return a.issue(a.account, "flowvault-engine", time.Time{}, nil)
}

// issue signs a new user's JWT with an account's key. perms, given the
// user's public key, returns its permissions (nil: all).
func (a *Authority) issue(account nkeys.KeyPair, name string, expires time.Time, perms func(user string) jwt.Permissions) (*Credentials, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("nats user key: %w", err)
	}
	user, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("nats user key: %w", err)
	}
	uc := jwt.NewUserClaims(user)
	uc.Name = name
	if !expires.IsZero() {
		uc.Expires = expires.Unix()
	}
	if perms != nil {
		// Issued to others than the engines, which alone come without
		// permissions: bounded, as no worker or event reader needs more.
		uc.Permissions = perms(user)
		uc.Limits.Subs = MaxClientSubscriptions
	}
	token, err := uc.Encode(account)
	if err != nil {
		kp.Wipe()
		return nil, fmt.Errorf("nats user jwt: %w", err)
	}
	return &Credentials{User: user, Expires: expires, jwt: token, kp: kp}, nil
}

// MaxClientSubscriptions bounds the subscriptions of one connection with
// credentials the authority issued to a worker or event reader: a worker
// needs a few (its inbox, its queues); 200,000 were accepted before.
const MaxClientSubscriptions = 10000

func (*Authority) String() string               { return redacted }
func (*Authority) GoString() string             { return redacted }
func (*Authority) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (*Authority) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (*Authority) LogValue() slog.Value         { return slog.StringValue(redacted) }

// redacted is how key-bearing types print.
const redacted = "***"
