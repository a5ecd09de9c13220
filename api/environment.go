package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// Environment is what the /api/environment handlers need. EnvStore
// serves it from a *secrets.Env. Environment values are not secrets: Orkes
// returns them in clear, and so does flowvault.
type Environment interface {
	Put(ctx context.Context, name, value, principal string, opts ...secrets.WriteOption) error
	Revision(ctx context.Context, name string) (secrets.Revision, error)
	Get(ctx context.Context, name string) (string, error)
	GetAt(ctx context.Context, name string, rev secrets.Revision) (string, error)
	Delete(ctx context.Context, name, principal string, opts ...secrets.WriteOption) (string, error)
	Snapshot(ctx context.Context) (EnvSnapshot, error)
	TagsAt(ctx context.Context, name string, rev secrets.Revision) ([]conductor.Tag, error)
	PutTags(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...secrets.WriteOption) error
	DeleteTags(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...secrets.WriteOption) error
}

// EnvSnapshot is the environment values' read model as one moment left
// it, which GET /api/environment reads in, as a secrets listing reads in
// a SecretSnapshot: its names, what its caller's access to each is
// decided on (Access, without the value) and what it shows of each (Var,
// or List for a caller whom every check allows). *secrets.EnvSnapshot
// implements it.
type EnvSnapshot interface {
	Names() ([]string, error)
	Access(name string) (creator string, tags []conductor.Tag, err error)
	Var(name string) (secrets.EnvVar, error)
	List() ([]secrets.EnvVar, error)
	Close() error
}

// EnvStore is the Environment of a *secrets.Env, whose listing reads in
// its Snapshot.
type EnvStore struct{ *secrets.Env }

// Snapshot implements Environment.
func (e EnvStore) Snapshot(ctx context.Context) (EnvSnapshot, error) {
	sn, err := e.Env.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return sn, nil
}

var _ Environment = EnvStore{}

// environmentRoutes registers Orkes' environment variable API
// (orkes-secrets.md §6.1).
func (s *Server) environmentRoutes() {
	s.route("GET /api/environment", auth.Authenticated, s.listEnv)
	s.route("PUT /api/environment/{key}", auth.Authenticated, s.putEnv)
	s.route("GET /api/environment/{key}", auth.Authenticated, s.getEnv)
	s.route("DELETE /api/environment/{key}", auth.Authenticated, s.deleteEnv)
	s.route("GET /api/environment/{key}/tags", auth.Authenticated, s.getKeyTags(s.checkEnvRequest, s.deps.Environment.Revision, s.deps.Environment.TagsAt))
	s.route("PUT /api/environment/{key}/tags", auth.Authenticated, s.changeKeyTags(s.checkEnvRequest, s.deps.Environment.Revision, s.deps.Environment.PutTags))
	s.route("DELETE /api/environment/{key}/tags", auth.Authenticated, s.changeKeyTags(s.checkEnvRequest, s.deps.Environment.Revision, s.deps.Environment.DeleteTags))
}

func envResource(name string) auth.Target {
	return auth.Target{Type: auth.TargetEnvVariable, ID: name}
}

// checkEnvRequest validates the name and asks the authorizer.
func (s *Server) checkEnvRequest(r *http.Request, access auth.Access) (string, error) {
	name := r.PathValue("key")
	if err := secrets.CheckEnvName(name); err != nil {
		return "", err
	}
	return name, s.authorize(r, access, envResource(name))
}

// putEnv stores the body (text/plain; a JSON string literal is decoded,
// as for secrets) as the value.
func (s *Server) putEnv(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("key")
	if err := secrets.CheckEnvName(name); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Access is checked on this revision, and the write applies to it
	// alone (secrets.At).
	rev, err := s.deps.Environment.Revision(r.Context(), name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	access := auth.Update
	if !rev.Exists {
		access = auth.Create
	}
	if err := s.authorize(r, access, envResource(name)); err != nil {
		if errors.Is(err, fault.ErrForbidden) {
			// One answer whether it exists or not: which access was
			// missing would tell (as for secrets).
			err = uniformRefusal(err, "%s may not write environment variable %s", principal(r), name)
		}
		s.writeError(w, r, err)
		return
	}
	value, err := readValueBody(w, r, "environment variable")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := secrets.CheckValue("environment variable", value); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.deps.Environment.Put(r.Context(), name, string(value), principal(r), secrets.At(rev)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeEmptyOK(w)
}

func (s *Server) getEnv(w http.ResponseWriter, r *http.Request) {
	// Checked on this revision, and the value served is its (secrets.
	// Env.LookupAt): one set again by another principal or untagged
	// between the check and the read is refused as stale (409, retryable),
	// not served to a caller allowed on the old one.
	rev, err := s.deps.Environment.Revision(r.Context(), r.PathValue("key"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name, err := s.checkEnvRequest(r, auth.Read)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v, err := s.deps.Environment.GetAt(r.Context(), name, rev)
	if err == nil {
		err = s.recordRead(r, &schemas.EnvRead{Name: name, Addr: clientAddr(r), Time: time.Now().UnixMilli(), By: principal(r)})
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeValue(w, []byte(v))
}

// deleteEnv deletes the value and answers with the value it had (as
// Orkes does): a value returned, so recorded as a read like GET's. The
// read is recorded before the delete, so that one that cannot be is
// refused (503) with nothing changed; a delete that then fails (a
// concurrent one) leaves a read recorded that returned nothing, which
// errs on the safe side.
func (s *Server) deleteEnv(w http.ResponseWriter, r *http.Request) {
	// Checked on this revision, applied to it alone (secrets.At): on an
	// engine whose read model lags, a caller allowed as the old value's
	// creator must not delete, and be answered with, the value someone
	// else created since.
	rev, err := s.deps.Environment.Revision(r.Context(), r.PathValue("key"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name, err := s.checkEnvRequest(r, auth.Delete)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Not found is answered before anything is recorded.
	_, err = s.deps.Environment.Get(r.Context(), name)
	if err == nil {
		err = s.recordRead(r, &schemas.EnvRead{Name: name, Addr: clientAddr(r), Time: time.Now().UnixMilli(), By: principal(r)})
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	old, err := s.deps.Environment.Delete(r.Context(), name, principal(r), secrets.At(rev))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeValue(w, []byte(old))
}

// listEnv answers [{name, value, tags}] for the values the caller may
// read, as one snapshot of the read model holds them (readableEnvs).
func (s *Server) listEnv(w http.ResponseWriter, r *http.Request) {
	out, err := s.readableEnvs(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	names := make([]string, 0, len(out))
	for _, v := range out {
		names = append(names, v.Name)
	}
	if len(names) > 0 {
		if err := s.recordRead(r, &schemas.EnvListed{Names: names, Addr: clientAddr(r), Time: time.Now().UnixMilli(), By: principal(r)}); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// readableEnvs is every environment value the caller may read, sorted by
// name, as one snapshot of the read model holds it: a value is read once
// the caller's access to it was decided on that state (mayListValue). A
// caller whom every check allows is answered one read of every value.
func (s *Server) readableEnvs(r *http.Request) ([]secrets.EnvVar, error) {
	snap, err := s.deps.Environment.Snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	defer s.release(secrets.ProjectionName, snap)
	if s.readsAll(r) {
		return snap.List()
	}
	all, err := snap.Names()
	if err != nil {
		return nil, err
	}
	read := []auth.Access{auth.Read}
	out := make([]secrets.EnvVar, 0, len(all))
	for _, name := range all {
		if !s.mayListValue(r, snap, envResource(name), read) {
			continue
		}
		v, err := snap.Var(name)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
