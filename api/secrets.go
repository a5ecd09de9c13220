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

// maxTagsBody bounds a tags request body.
const maxTagsBody = 1 << 20

// Secrets is what the /api/secrets handlers need. *secrets.Store
// implements it; see there for the contract of each method.
type Secrets interface {
	Put(ctx context.Context, name string, value []byte, principal string, opts ...secrets.WriteOption) (int, error)
	Revision(ctx context.Context, name string) (secrets.Revision, error)
	Read(ctx context.Context, name string, rev secrets.Revision) (secrets.Value, secrets.Served, error)
	Exists(ctx context.Context, name string) (bool, error)
	MetadataAt(ctx context.Context, name string, rev secrets.Revision) (*secrets.Meta, error)
	Names(ctx context.Context) ([]string, error)
	List(ctx context.Context) ([]secrets.Meta, error)
	TagsAt(ctx context.Context, name string, rev secrets.Revision) ([]conductor.Tag, error)
	Delete(ctx context.Context, name, principal string, opts ...secrets.WriteOption) error
	PutTags(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...secrets.WriteOption) error
	DeleteTags(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...secrets.WriteOption) error
	ClearCache()
}

var _ Secrets = (*secrets.Store)(nil)

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
// holds what listAccess asks, sorted. The check comes first: nothing of
// a secret but its name is read for a caller who may not see it.
func (s *Server) readableSecrets(r *http.Request) ([]string, error) {
	actions, err := listAccess(r)
	if err != nil {
		return nil, err
	}
	all, err := s.deps.Secrets.Names(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(all))
	for _, name := range all {
		if s.mayAll(r, actions, auth.Resource{Target: secretResource(name)}) {
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
// listAccess asks, with its tags, sorted by name. A caller whom every
// check allows is answered one read of every secret's state: it has no
// check to pin a secret's tags to, and a revision and a read of each
// would cost it more than that read.
func (s *Server) readableSecretsWithTags(r *http.Request) ([]extendedSecret, error) {
	actions, err := listAccess(r)
	if err != nil {
		return nil, err
	}
	if s.readsAll(r) {
		all, err := s.deps.Secrets.List(r.Context())
		out := make([]extendedSecret, 0, len(all))
		for _, m := range all {
			out = append(out, extendedSecret{Name: m.Name, Tags: m.Tags})
		}
		return out, err
	}
	all, err := s.deps.Secrets.Names(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]extendedSecret, 0, len(all))
	for _, name := range all {
		tags, ok, err := s.listedSecretTags(r, actions, name)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, extendedSecret{Name: name, Tags: tags})
		}
	}
	return out, nil
}

// listedSecretTags is the tags of secret name as the caller may list
// them, and false when it may not or the secret is gone. They are read
// after the check, at the revision it was made on (Revision before it,
// TagsAt after it), as readableEnv reads a value: a secret deleted and
// created again, or retagged, by someone else while it was checked is
// checked again.
func (s *Server) listedSecretTags(r *http.Request, actions []auth.Access, name string) ([]conductor.Tag, bool, error) {
	var err error
	for range envListTries {
		var rev secrets.Revision
		if rev, err = s.deps.Secrets.Revision(r.Context(), name); err != nil {
			return nil, false, err
		}
		if !rev.Exists || !s.mayAll(r, actions, auth.Resource{Target: secretResource(name)}) {
			return nil, false, nil
		}
		var tags []conductor.Tag
		tags, err = s.deps.Secrets.TagsAt(r.Context(), name, rev)
		switch {
		case err == nil:
			return tags, true, nil
		case errors.Is(err, fault.ErrNotFound):
			return nil, false, nil
		case !errors.Is(err, fault.ErrStale):
			return nil, false, err
		}
	}
	return nil, false, err
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
