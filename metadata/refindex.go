package metadata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/projections"
)

// refIndex indexes names of one kind that stored workflow definition
// versions refer to, so that the API finds who refers to a name without
// reading every definition: one key per reference,
// <refs><name>\x00<workflow>\x00<version>, holding what the version says
// of the name, and one per version, <of><workflow>\x00<version>, listing
// its names, by which a replaced or removed version's references go.
type refIndex struct{ refs, of string }

var (
	// taskUseIndex: the tasks a version hands out (TaskUses).
	taskUseIndex = refIndex{refs: "u/", of: "v/"}
	// startIndex: the workflows a version starts by name (Starters).
	startIndex = refIndex{refs: "n/", of: "m/"}
)

func (x refIndex) prefix(name string) []byte {
	k := make([]byte, 0, len(x.refs)+len(name)+1)
	return append(append(append(k, x.refs...), name...), 0)
}

func (x refIndex) key(name, workflow string, version int) []byte {
	k := append(x.prefix(name), workflow...)
	return binary.BigEndian.AppendUint32(append(k, 0), uint32(version))
}

func (x refIndex) ofKey(workflow string, version int) []byte {
	k := make([]byte, 0, len(x.of)+len(workflow)+5)
	k = append(append(append(k, x.of...), workflow...), 0)
	return binary.BigEndian.AppendUint32(k, uint32(version))
}

// scan calls fn with each version that refers to name, in key order
// (workflow name, then version), and the value recorded for it.
func (x refIndex) scan(r kvReader, name string, fn func(workflow string, version int, v []byte) error) error {
	prefix := x.prefix(name)
	var ferr error
	err := r.Scan(prefix, func(k, v []byte) bool {
		rest := k[len(prefix):]
		if len(rest) < 5 || rest[len(rest)-5] != 0 {
			return true // not a key x.key writes
		}
		ferr = fn(string(rest[:len(rest)-5]), int(binary.BigEndian.Uint32(rest[len(rest)-4:])), v)
		return ferr == nil
	})
	if err == nil {
		err = ferr
	}
	return err
}

// write records refs (name → value, msgpack-encoded) of a workflow
// version, replacing what was recorded for the version before. Names a
// definition could not have are left out: nothing can claim them.
func (x refIndex) write(kv kvWriter, workflow string, version int, refs map[string]any) error {
	if err := x.remove(kv, workflow, version); err != nil {
		return err
	}
	maps.DeleteFunc(refs, func(name string, _ any) bool { return !indexableName(name) })
	if len(refs) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(refs))
	for _, n := range names {
		v, err := msgpack.Marshal(refs[n])
		if err != nil {
			return err
		}
		if err := kv.Set(x.key(n, workflow, version), v); err != nil {
			return err
		}
	}
	v, err := msgpack.Marshal(names)
	if err != nil {
		return err
	}
	return kv.Set(x.ofKey(workflow, version), v)
}

// remove deletes what is recorded for a workflow version.
func (x refIndex) remove(kv kvWriter, workflow string, version int) error {
	v, err := kv.Get(x.ofKey(workflow, version))
	if errors.Is(err, projections.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var names []string
	if err := msgpack.Unmarshal(v, &names); err != nil {
		return fmt.Errorf("decode references of %s version %d: %w", workflow, version, err)
	}
	for _, n := range names {
		if err := kv.Delete(x.key(n, workflow, version)); err != nil {
			return err
		}
	}
	return kv.Delete(x.ofKey(workflow, version))
}
