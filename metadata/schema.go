package metadata

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// SaveSchema stores schema def (POST /api/schema) and returns the version
// it stored: def.Version (1 when 0) overwritten or created, or with
// newVersion the version after the latest. The caller checks that its
// data compiles (schemacheck.Compile); the read model adds who saved it
// and when.
func (s *Store) SaveSchema(ctx context.Context, def *conductor.SchemaDef, newVersion bool, principal string) (int, error) {
	if err := CheckSchema(def, ""); err != nil {
		return 0, err
	}
	c := *def
	c.CreatedBy, c.UpdatedBy, c.CreateTime, c.UpdateTime = "", "", 0, 0
	var version int
	err := s.update(ctx, SchemaSubject(c.Name), principal, writeOpts(nil), func(v view) ([]schemas.Event, error) {
		version = max(c.Version, 1)
		if newVersion {
			versions, err := schemaVersions(v.KV, c.Name)
			if err != nil {
				return nil, err
			}
			if len(versions) > 0 {
				version = slices.Max(versions) + 1
			}
		}
		c.Version = version
		raw, err := json.Marshal(&c)
		if err != nil {
			return nil, err
		}
		return []schemas.Event{&schemas.SchemaSaved{Name: c.Name, Version: version, Def: raw, Time: s.millis(), By: principal}}, nil
	})
	return version, err
}

// CheckSchema checks what the store requires of a schema it saves: a
// name, and a version (when given) in range. prefix locates def in a list
// ("[2]").
func CheckSchema(def *conductor.SchemaDef, prefix string) error {
	ve := &fault.ValidationError{}
	if def == nil {
		ve.Add(prefix, "must be a schema")
		return ve.Err()
	}
	checkName(ve, at(prefix, "name"), def.Name)
	if def.Version < 0 || def.Version > math.MaxInt32 {
		ve.Add(at(prefix, "version"), "must be between 1 and %d", math.MaxInt32)
	}
	return ve.Err()
}

// RemoveSchema removes version *version of schema name, or every version
// when version is nil (DELETE /api/schema/{name}[/{version}]).
func (s *Store) RemoveSchema(ctx context.Context, name string, version *int, principal string) error {
	return s.update(ctx, SchemaSubject(name), principal, writeOpts(nil), func(v view) ([]schemas.Event, error) {
		_, found, err := findSchema(v.KV, name, version)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, SchemaNotFound(name, version)
		}
		ev := &schemas.SchemaRemoved{Name: name, Time: s.millis(), By: principal}
		if version != nil {
			ev.Version = *version
		}
		return []schemas.Event{ev}, nil
	})
}

// Schema returns version *version of schema name, or its latest version
// when version is nil. A schema the read model does not hold yet is read
// from the log: another engine may have saved it a moment ago.
func (s *Store) Schema(ctx context.Context, name string, version *int) (*conductor.SchemaDef, error) {
	d, found, err := findSchema(s.reader, name, version)
	if err != nil {
		return nil, err
	}
	if !found && registrable(name) {
		v, err := s.logView(ctx, SchemaSubject(name))
		if err != nil {
			return nil, err
		}
		if d, found, err = findSchema(v.KV, name, version); err != nil {
			return nil, err
		}
	}
	if !found {
		return nil, SchemaNotFound(name, version)
	}
	return parseSchema(d.JSON)
}

// Schemas returns every version of every schema, sorted by name, then
// version.
func (s *Store) Schemas(_ context.Context) ([]*conductor.SchemaDef, error) {
	return listAll(s.reader, schemaKeyPrefix, "schemas", parseSchema)
}

// SchemaNotFound is the answer for a schema that does not exist.
func SchemaNotFound(name string, version *int) error {
	if version == nil {
		return fault.NotFound("schema %s not found", name)
	}
	return fault.NotFound("schema %s version %d not found", name, *version)
}

// findSchema reads one version, or the latest when version is nil.
func findSchema(r kvReader, name string, version *int) (storedDef, bool, error) {
	return findVersion(r, schemaPrefix(name), version)
}

func schemaVersions(r kvReader, name string) ([]int, error) {
	var out []int
	prefix := schemaPrefix(name)
	err := r.Scan(prefix, func(k, _ []byte) bool {
		if rest := k[len(prefix):]; len(rest) == 4 {
			out = append(out, int(binary.BigEndian.Uint32(rest)))
		}
		return true
	})
	return out, err
}

func parseSchema(b []byte) (*conductor.SchemaDef, error) {
	var d conductor.SchemaDef
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("parse stored schema: %w", err)
	}
	return &d, nil
}
