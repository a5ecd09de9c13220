package schemas

import "reflect"

// EventTypes lists the struct types registered with r, by event type.
func (r *Registry) EventTypes() map[string]reflect.Type {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]reflect.Type, len(r.byName))
	for name, e := range r.byName {
		if e.typ != nil {
			out[name] = e.typ
		}
	}
	return out
}
