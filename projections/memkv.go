package projections

import (
	"bytes"
	"sort"
	"strings"
)

// MemKV is an in-memory key space with a Batch's and a Reader's methods
// (Get, Set, Delete, Scan). Read models use it to fold one subject straight
// from the log when the read model has not caught up with it yet, with the
// same code that writes the read model.
type MemKV map[string][]byte

// Get returns a copy of key's value, or ErrNotFound.
func (m MemKV) Get(key []byte) ([]byte, error) {
	v, ok := m[string(key)]
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

// Set stores a copy of value under key.
func (m MemKV) Set(key, value []byte) error {
	m[string(key)] = bytes.Clone(value)
	return nil
}

// Delete removes key.
func (m MemKV) Delete(key []byte) error {
	delete(m, string(key))
	return nil
}

// Scan visits the keys with prefix in key order, like Reader.Scan.
func (m MemKV) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		if strings.HasPrefix(k, string(prefix)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !fn([]byte(k), m[k]) {
			break
		}
	}
	return nil
}
