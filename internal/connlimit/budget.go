package connlimit

// A Budget splits the process's file descriptors between the HTTP
// listener, the embedded NATS server's clients and the stores.
type Budget struct {
	// Files is the process's soft RLIMIT_NOFILE (0: unknown, on systems
	// without one); Go raises it to the hard limit when the process
	// starts (syscall's init, Go 1.19 and later), so this is what the
	// process may open.
	Files uint64
	// HTTP is the most connections the HTTP listener holds open.
	HTTP int
	// NATS is the most client connections of the embedded NATS server
	// (server.Options.MaxConn), in-process ones included.
	NATS int
	// Workers is the most connections of the workers' account: fewer than
	// NATS, so that the workers cannot take the room the engines need to
	// connect (again).
	Workers int
}

const (
	// StoreReserve is the least a budget leaves to what is not a
	// connection: the embedded JetStream's stream and consumer files,
	// Pebble's tables (its table cache keeps up to 1,000 open), the data
	// directory's lock, logs, the process's own. A quarter of the limit is
	// left when that is more.
	StoreReserve = 4096
	// MaxConnDefault caps a default bound: nats-server's own default
	// MaxConn (64K). A limit of millions of descriptors is not a reason to
	// hold millions of connections, each of which costs memory.
	MaxConnDefault = 64 << 10
	// minConns is the least a default bound is: a limit too low for the
	// reserve still serves a few clients (and its stores then fail first,
	// as they would without a budget).
	minConns = 64
	// minEngineRoom is the least of the NATS connections kept from the
	// workers for the engines, whose own, reconnecting, must not be
	// refused (ten percent when that is more).
	minEngineRoom = 32
	// MinNATS is the least bound of the embedded NATS server's
	// connections an operator may give: the engines' room and one
	// worker's. The server itself holds three; below it, it could not
	// start.
	MinNATS = minEngineRoom + 1
)

// NewBudget splits files descriptors: the stores' reserve first, half of
// the rest to each listener; http or nats above zero are taken as given
// (an operator's choice), and the workers' share follows from nats.
func NewBudget(files uint64, http, nats int) Budget {
	b := Budget{Files: files, HTTP: http, NATS: nats}
	conns := MaxConnDefault * 2
	if files > 0 {
		reserve := max(StoreReserve, files/4)
		conns = minConns * 2
		if files > reserve+minConns*2 {
			conns = int(min(files-reserve, MaxConnDefault*2))
		}
	}
	if b.HTTP <= 0 {
		b.HTTP = max(conns/2, minConns)
	}
	if b.NATS <= 0 {
		b.NATS = max(conns/2, minConns)
	}
	b.Workers = max(b.NATS-max(b.NATS/10, minEngineRoom), 1)
	return b
}

// Fits reports whether the budget's connections leave the stores their
// least reserve (StoreReserve, or half the limit on a smaller one); a
// budget of unknown limit always fits.
func (b Budget) Fits() bool {
	if b.Files == 0 {
		return true
	}
	reserve := min(uint64(StoreReserve), b.Files/2)
	return uint64(b.HTTP)+uint64(b.NATS)+reserve <= b.Files
}
