package metadata

import (
	"bytes"
	"sort"
	"strings"

	"github.com/flowvault/flowvault/projections"
)

// memKV is an in-memory kvWriter. It holds the fold of one subject read
// straight from the log, when the read model has not caught up with it.
type memKV map[string][]byte

func (m memKV) Get(key []byte) ([]byte, error) {
	v, ok := m[string(key)]
	if !ok {
		return nil, projections.ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (m memKV) Set(key, value []byte) error {
	m[string(key)] = bytes.Clone(value)
	return nil
}

func (m memKV) Delete(key []byte) error {
	delete(m, string(key))
	return nil
}

// Scan visits the keys with prefix in key order, like projections.Reader.
func (m memKV) Scan(prefix []byte, fn func(key, value []byte) bool) error {
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
