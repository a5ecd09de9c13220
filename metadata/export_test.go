package metadata

// HookReads has before run ahead of each read that sn's Unpinned
// revisions made after it make: a test's concurrent change lands between the reads of
// one answer.
func (sn *Snapshot) HookReads(before func()) { sn.kv = hookedReads{kvReader: sn.kv, before: before} }

type hookedReads struct {
	kvReader
	before func()
}

func (h hookedReads) Get(key []byte) ([]byte, error) {
	h.before()
	return h.kvReader.Get(key)
}

func (h hookedReads) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	h.before()
	return h.kvReader.Scan(prefix, fn)
}

// HookLiveReads has before run ahead of each read s makes of the live
// read model from now on: a test's concurrent change lands between the
// reads of one answer.
func (s *Store) HookLiveReads(before func()) {
	s.reader = hookedReads{kvReader: s.reader, before: before}
}
