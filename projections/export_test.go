package projections

import "github.com/cockroachdb/pebble/v2"

// ForgetLayout deletes the layout recorded for projection name's read
// model, as a version from before layouts were recorded left it.
func ForgetLayout(s *Store, name string) error {
	return s.db.Delete([]byte(layoutPrefix+name), pebble.NoSync)
}
