package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// maxTagsBody bounds a tags request body.
const maxTagsBody = 1 << 20

// Secrets is what the /api/secrets handlers need. SecretStore serves it
// from a *secrets.Store; see there for the contract of each method.
type Secrets interface {
	Put(ctx context.Context, name string, value []byte, principal string, opts ...secrets.WriteOption) (int, error)
	Revision(ctx context.Context, name string) (secrets.Revision, error)
	Read(ctx context.Context, name string, rev secrets.Revision) (secrets.Value, secrets.Served, error)
	Exists(ctx context.Context, name string) (bool, error)
	MetadataAt(ctx context.Context, name string, rev secrets.Revision) (*secrets.Meta, error)
	Snapshot(ctx context.Context) (SecretSnapshot, error)
	TagsAt(ctx context.Context, name string, rev secrets.Revision) ([]conductor.Tag, error)
	Delete(ctx context.Context, name, principal string, opts ...secrets.WriteOption) error
	PutTags(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...secrets.WriteOption) error
	DeleteTags(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...secrets.WriteOption) error
	ClearCache()
}

// SecretSnapshot is the secrets read model as one moment left it, which
// a secrets listing reads in: its names, what its caller's access to each
// is decided on (Access, which the Authorizer asks through
// snapshotAccess) and what it shows of each (Tags, or List for a caller
// whom every check allows). The check and what is shown are then of one
// state, which no change moves. *secrets.Snapshot implements it; it reads
// no value.
type SecretSnapshot interface {
	Names() ([]string, error)
	Access(name string) (creator string, tags []conductor.Tag, err error)
	Tags(name string) ([]conductor.Tag, error)
	List() ([]secrets.Meta, error)
	Close() error
}

// SecretStore is the Secrets of a *secrets.Store, whose listings read in
// its Snapshot.
type SecretStore struct{ *secrets.Store }

// Snapshot implements Secrets.
func (s SecretStore) Snapshot(ctx context.Context) (SecretSnapshot, error) {
	sn, err := s.Store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return sn, nil
}

var _ Secrets = SecretStore{}

// secretRoutes registers the Orkes secrets API (orkes-secrets.md §1,
// conductor-api.md §4.4). Literal routes (v2, the cache routes) win over
// {key}; those names are reserved, so no secret is shadowed.
func (s *Server) secretRoutes() {
	s.route("GET /api/secrets", auth.Authenticated, s.listSecretNames)
	s.route("POST /api/secrets", auth.Authenticated, s.listAllSecretNames)
	s.route("GET /api/secrets-v2", auth.Authenticated, s.listSecretsWithTags)
	s.route("GET /api/secrets/v2", auth.Authenticated, s.listSecretsWithTags)
	s.route("GET /api/secrets/clearLocalCache", auth.Admin, s.clearSecretCache(true))
	s.route("GET /api/secrets/clearRedisCache", auth.Admin, s.clearSecretCache(false))
	s.route("PUT /api/secrets/{key}", auth.Authenticated, s.putSecret)
	s.route("GET /api/secrets/{key}", auth.Authenticated, s.getSecret)
	s.route("DELETE /api/secrets/{key}", auth.Authenticated, s.deleteSecret)
	s.route("GET /api/secrets/{key}/exists", auth.Authenticated, s.secretExists)
	s.route("GET /api/secrets/{key}/metadata", auth.Authenticated, s.secretMetadata)
	s.route("GET /api/secrets/{key}/tags", auth.Authenticated, s.getKeyTags(s.checkSecretRequest, s.deps.Secrets.Revision, s.deps.Secrets.TagsAt))
	s.route("PUT /api/secrets/{key}/tags", auth.Authenticated, s.changeKeyTags(s.checkSecretRequest, s.deps.Secrets.Revision, s.deps.Secrets.PutTags))
	s.route("DELETE /api/secrets/{key}/tags", auth.Authenticated, s.changeKeyTags(s.checkSecretRequest, s.deps.Secrets.Revision, s.deps.Secrets.DeleteTags))
}

func secretResource(name string) auth.Target {
	return auth.Target{Type: auth.TargetSecret, ID: name}
}

// checkSecretRequest validates the path's secret name and asks the
// authorizer for access to it.
func (s *Server) checkSecretRequest(r *http.Request, access auth.Access) (string, error) {
	name := r.PathValue("key")
	if err := secrets.CheckSecretName(name); err != nil {
		return "", err
	}
	return name, s.authorize(r, access, secretResource(name))
}

// emptyObject is the JSON body of PUT and DELETE /api/secrets/{key}
// (Orkes: "application/json object").
var emptyObject = []byte("{}")

// putSecret stores the body as the secret's next version. The body is the
// value: raw text, or a JSON string literal with Content-Type
// application/json (see readValueBody).
func (s *Server) putSecret(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("key")
	if err := secrets.CheckSecretName(name); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Access is checked on this revision, and the write applies to it
	// alone (secrets.At): checked as a CREATE of a name nobody holds, a
	// slow request must not overwrite the secret someone created since.
	rev, err := s.deps.Secrets.Revision(r.Context(), name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	access := auth.Create
	if rev.Exists {
		access = auth.Update
	}
	if err := s.authorize(r, access, secretResource(name)); err != nil {
		if errors.Is(err, fault.ErrForbidden) {
			// One answer whether it exists or not: which access was
			// missing would tell.
			err = uniformRefusal(err, "%s may not write secret %s", principal(r), name)
		}
		s.writeError(w, r, err)
		return
	}
	value, err := readValueBody(w, r, "secret")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	_, err = s.deps.Secrets.Put(r.Context(), name, value, principal(r), secrets.At(rev))
	wipeBytes(value)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRawJSON(w, http.StatusOK, emptyObject)
}

// getSecret answers with the raw value as text/plain: the one response
// that carries a secret value. The read's audit record (version and
// fingerprint, never the value) is appended first: a read that cannot be
// recorded is not served (503).
func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) {
	// Checked on this revision, and the value served is its (secrets.
	// ResolveAt): one created again or untagged between the check and the
	// read is refused as stale, not served to a caller allowed on the old
	// one.
	rev, err := s.deps.Secrets.Revision(r.Context(), r.PathValue("key"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name, err := s.checkSecretRequest(r, auth.Read)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	value, served, err := s.deps.Secrets.Read(r.Context(), name, rev)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer value.Wipe()
	if err := s.recordRead(r, &schemas.SecretRead{Name: name, Version: served.Version, Fingerprint: served.Fingerprint,
		Addr: clientAddr(r), Time: time.Now().UnixMilli(), By: principal(r)}); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeValue(w, value.Bytes())
}

// deleteSecret deletes a secret. An unknown key is 404 (Orkes answers
// 500; every SDK tolerates an error here).
func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) {
	// Checked on this revision, applied to it alone (secrets.At): on an
	// engine whose read model lags, a caller allowed as the old secret's
	// creator must not delete, and destroy the key of, the secret someone
	// else created since.
	rev, err := s.deps.Secrets.Revision(r.Context(), r.PathValue("key"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name, err := s.checkSecretRequest(r, auth.Delete)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.deps.Secrets.Delete(r.Context(), name, principal(r), secrets.At(rev)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRawJSON(w, http.StatusOK, emptyObject)
}

// secretExists answers 200 true, or 404 when the secret does not exist:
// the JS SDK reports any 200 body, false included, as true.
func (s *Server) secretExists(w http.ResponseWriter, r *http.Request) {
	name, err := s.checkSecretRequest(r, auth.Read)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ok, err := s.deps.Secrets.Exists(r.Context(), name)
	if err == nil && !ok {
		err = fault.NotFound("secret %s not found", name)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRawJSON(w, http.StatusOK, []byte("true"))
}

// secretMetadata answers with everything about a secret but its value
// (a flowvault extension, used by `flowvault secret get`), of the
// revision the caller's access was checked on, as getSecret serves the
// value: the metadata of a secret created again or retagged by someone
// else between the check and the read (its creator, its tags, its
// values' fingerprints) is refused as stale.
func (s *Server) secretMetadata(w http.ResponseWriter, r *http.Request) {
	rev, err := s.deps.Secrets.Revision(r.Context(), r.PathValue("key"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name, err := s.checkSecretRequest(r, auth.Read)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	m, err := s.deps.Secrets.MetadataAt(r.Context(), name, rev)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// listAccess reads a listing's "access" parameter (Orkes's
// secrets and definition lists): what the caller must hold on each entry
// listed, all of it. READ always: a listing shows names and tags (CREATE,
// which USER has on every name, would list them all).
func listAccess(r *http.Request) ([]auth.Access, error) {
	actions := []auth.Access{auth.Read}
	for _, a := range listParam(r.URL.Query(), "access") {
		switch act := auth.Access(a); act {
		case auth.Create, auth.Read, auth.Update, auth.Delete, auth.Execute:
			actions = append(actions, act)
		default:
			return nil, fault.Invalid("access %q: want READ, CREATE, UPDATE, DELETE or EXECUTE", a)
		}
	}
	return actions, nil
}

// mayAll reports whether the caller holds every one of actions on res.
func (s *Server) mayAll(r *http.Request, actions []auth.Access, res auth.Resource) bool {
	for _, a := range actions {
		if s.authorizeOn(r, a, res) != nil {
			return false
		}
	}
	return true
}

// readableSecrets lists the names of the secrets on which the caller
// holds what listAccess asks, sorted, as one snapshot of the read model
// holds them (mayListValue). Nothing of a secret but its name, and what
// the Authorizer decides on, is read.
func (s *Server) readableSecrets(r *http.Request) ([]string, error) {
	actions, err := listAccess(r)
	if err != nil {
		return nil, err
	}
	snap, err := s.deps.Secrets.Snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	defer s.release(secrets.ProjectionName, snap)
	all, err := snap.Names()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(all))
	for _, name := range all {
		if s.mayListValue(r, snap, secretResource(name), actions) {
			out = append(out, name)
		}
	}
	return out, nil
}

// listSecretNames: GET /api/secrets, the names the caller may access.
func (s *Server) listSecretNames(w http.ResponseWriter, r *http.Request) {
	names, err := s.readableSecrets(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, names)
}

// listAllSecretNames: POST /api/secrets. Orkes lists every secret here, for
// administrators; flowvault lists the ones the caller may read, which for
// an administrator is every secret.
func (s *Server) listAllSecretNames(w http.ResponseWriter, r *http.Request) {
	r.URL.RawQuery = "" // no access filter beyond READ
	s.listSecretNames(w, r)
}

// extendedSecret is Orkes' ExtendedSecret.
type extendedSecret struct {
	Name string          `json:"name"`
	Tags []conductor.Tag `json:"tags"`
}

// listSecretsWithTags: GET /api/secrets-v2 and /api/secrets/v2.
func (s *Server) listSecretsWithTags(w http.ResponseWriter, r *http.Request) {
	out, err := s.readableSecretsWithTags(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// readableSecretsWithTags is every secret on which the caller holds what
// listAccess asks, with its tags, sorted by name, as one snapshot of the
// read model holds them: a secret's tags are read once the caller's
// access to it was decided on that state (mayListValue). A caller whom
// every check allows is answered one read of every secret's state.
func (s *Server) readableSecretsWithTags(r *http.Request) ([]extendedSecret, error) {
	actions, err := listAccess(r)
	if err != nil {
		return nil, err
	}
	snap, err := s.deps.Secrets.Snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	defer s.release(secrets.ProjectionName, snap)
	if s.readsAll(r) {
		all, err := snap.List()
		if err != nil {
			return nil, err
		}
		out := make([]extendedSecret, 0, len(all))
		for _, m := range all {
			out = append(out, extendedSecret{Name: m.Name, Tags: m.Tags})
		}
		return out, nil
	}
	all, err := snap.Names()
	if err != nil {
		return nil, err
	}
	out := make([]extendedSecret, 0, len(all))
	for _, name := range all {
		if !s.mayListValue(r, snap, secretResource(name), actions) {
			continue
		}
		tags, err := snap.Tags(name)
		if err != nil {
			return nil, err
		}
		out = append(out, extendedSecret{Name: name, Tags: tags})
	}
	return out, nil
}

// valueAccess reads what access to a secret or environment value follows
// besides the grants on it (SecretSnapshot, EnvSnapshot).
type valueAccess interface {
	Access(name string) (creator string, tags []conductor.Tag, err error)
}

// mayListValue reports whether the caller holds every one of actions on
// secret or environment value t as a listing's snapshot holds it: its
// tags and creator are read there (snapshotAccess), in the state the
// listing shows, so a value deleted and created again, or retagged, by
// someone else while the listing is checked is neither checked on one
// state and shown in another nor left out of both. Refused for any
// reason, it is left out. A caller who may read everything is not
// checked.
func (s *Server) mayListValue(r *http.Request, snap valueAccess, t auth.Target, actions []auth.Access) bool {
	if s.readsAll(r) {
		return true
	}
	return s.mayAll(r, actions, auth.Resource{Target: t, Describer: snapshotAccess{snap}})
}

// snapshotAccess tells the Authorizer the tags and creator of a secret or
// environment value as a listing's snapshot holds them (auth.Resource's
// Describer), where the node's source reads the live read model. A name
// the snapshot does not hold has neither.
type snapshotAccess struct{ snap valueAccess }

func (d snapshotAccess) Describe(_ context.Context, t auth.Target) (tags []string, creator string, err error) {
	creator, stored, err := d.snap.Access(t.ID)
	if errors.Is(err, fault.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	return auth.TagNames(stored), creator, nil
}

// release closes a listing's snapshot of read model projection: a
// failure is logged, the listing being answered.
func (s *Server) release(projection string, snap io.Closer) {
	if err := snap.Close(); err != nil {
		s.deps.Logger.Warn("close a listing's snapshot of a read model", logkey.Projection, projection, logkey.Err, err)
	}
}

// clearSecretCache: the local cache is the data keys held in memory; there
// is no Redis, so clearing it does nothing.
func (s *Server) clearSecretCache(local bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !local {
			writeJSON(w, http.StatusOK, map[string]string{"redisCache": "not used by flowvault"})
			return
		}
		s.deps.Secrets.ClearCache()
		writeJSON(w, http.StatusOK, map[string]string{"localCache": "cleared"})
	}
}

type secretTagsFunc func(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...secrets.WriteOption) error

// revisionFunc reads the revision of a secret or environment value.
type revisionFunc func(ctx context.Context, name string) (secrets.Revision, error)

// requestCheck validates a request's key and authorizes the access
// (checkSecretRequest, checkEnvRequest).
type requestCheck func(r *http.Request, access auth.Access) (string, error)

// getKeyTags answers with the tags of the secret or environment value
// check admits for READ, of the revision it was checked on (as
// changeKeyTags writes them): tags a value re-created or retagged by
// someone else meanwhile carries are refused as stale.
func (s *Server) getKeyTags(check requestCheck, revision revisionFunc,
	tagsAt func(ctx context.Context, name string, rev secrets.Revision) ([]conductor.Tag, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rev, err := revision(r.Context(), r.PathValue("key"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		name, err := check(r, auth.Read)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		tags, err := tagsAt(r.Context(), name, rev)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, tags)
	}
}

// changeKeyTags handles PUT (add, or update by key) and DELETE (remove
// matching key and value) of the tags of the secret or environment value
// check admits for UPDATE. The body is [Tag]; one Tag is accepted too.
func (s *Server) changeKeyTags(check requestCheck, revision revisionFunc, change secretTagsFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Checked on this revision, applied to it alone: a tag granting
		// read must not land on a value re-created by someone else.
		rev, err := revision(r.Context(), r.PathValue("key"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		name, err := check(r, auth.Update)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var tags tagList
		if err := decodeJSON(w, r, maxTagsBody, &tags); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := change(r.Context(), name, tags, principal(r), secrets.At(rev)); err != nil {
			s.writeError(w, r, err)
			return
		}
		writeEmptyOK(w)
	}
}

// writeEmptyOK answers 200 with an empty body and Content-Length 0, which
// every SDK accepts for a void answer.
func writeEmptyOK(w http.ResponseWriter) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}
