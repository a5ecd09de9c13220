package secrets

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/flowvault/flowvault/internal/logkey"
)

// MasterKeyEnv is the environment variable that carries the master key
// (base64 of exactly 32 bytes). It has no flag: a key on a command line is
// visible to every user of the machine.
const MasterKeyEnv = "FLOWVAULT_MASTER_KEY"

// DevKeyFileName is the file, in the data directory, where dev mode keeps
// a generated master key.
const DevKeyFileName = "master.key"

// MasterKey is the key encryption root: it seals the keyring of KEK terms,
// which wrap the data keys. It prints as "***".
type MasterKey struct {
	redacted
	key []byte
}

// ParseMasterKey decodes a master key from its text form: standard base64
// (padded or not) of exactly 32 bytes, surrounding whitespace ignored.
// Errors never quote the text.
func ParseMasterKey(text string) (*MasterKey, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, errors.New("master key is empty: want base64 of 32 random bytes (e.g. `openssl rand -base64 32`)")
	}
	enc := base64.StdEncoding
	if !strings.HasSuffix(text, "=") && len(text)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	key, err := enc.DecodeString(text)
	if err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("master key is not valid base64 (bad character or length at input byte %d): want base64 of 32 random bytes (e.g. `openssl rand -base64 32`)", int64(ce))
		}
		return nil, errors.New("master key is not valid base64: want base64 of 32 random bytes (e.g. `openssl rand -base64 32`)")
	}
	if len(key) != KeySize {
		n := len(key)
		wipe(key)
		return nil, fmt.Errorf("master key decodes to %d bytes, want exactly %d (e.g. `openssl rand -base64 32`)", n, KeySize)
	}
	return &MasterKey{key: key}, nil
}

// GenerateMasterKey returns a new random master key.
func GenerateMasterKey() *MasterKey { return &MasterKey{key: newKey()} }

// Text is the key's text form (base64), for writing it to a key file.
func (m *MasterKey) Text() Value {
	return Value(base64.StdEncoding.AppendEncode(nil, m.key))
}

// Wipe overwrites the key with zeros; the MasterKey is unusable after.
func (m *MasterKey) Wipe() { wipe(m.key) }

// DeriveKey returns a 32-byte key derived from the master key for one
// purpose (HKDF-SHA256; info names the purpose, e.g.
// "flowvault/nats/operator/v1"). Every process holding the same master key
// derives the same key, and no key for one purpose says anything about
// the master key or another purpose. The caller should wipe the result.
func (m *MasterKey) DeriveKey(info string) ([]byte, error) {
	if info == "" {
		return nil, errors.New("derive key: empty purpose")
	}
	k, err := hkdf.Key(sha256.New, m.key, nil, info, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	return k, nil
}

// checkValue identifies the key without revealing it: the first 8 bytes of
// HMAC-SHA256(key, label). The sealed keyring carries it, so a wrong
// master key is told apart from a damaged keyring.
func (m *MasterKey) checkValue() []byte {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte("flowvault/master-key-check/v1"))
	return h.Sum(nil)[:8]
}

// MasterKeySource says where the master key comes from. At most one of
// Text and File may be set; with neither, the caller is in dev mode (see
// KeysOptions.DevKeyFile).
type MasterKeySource struct {
	// Text is the key's base64 text ($FLOWVAULT_MASTER_KEY).
	Text Value
	// File holds the key's base64 text (--master-key-file).
	File string
}

// Configured reports whether the source names a key.
func (s MasterKeySource) Configured() bool { return len(s.Text) > 0 || s.File != "" }

// Validate checks the source without reading files.
func (s MasterKeySource) Validate() error {
	if len(s.Text) > 0 && s.File != "" {
		return fmt.Errorf("set $%s or --master-key-file, not both", MasterKeyEnv)
	}
	if len(s.Text) > 0 {
		k, err := ParseMasterKey(string(s.Text))
		if err != nil {
			return fmt.Errorf("$%s: %w", MasterKeyEnv, err)
		}
		k.Wipe()
	}
	return nil
}

// LoadMasterKey reads the key the source names. It returns nil and no
// error when the source names none (dev mode). A key file readable by
// other users is used, with a warning.
func LoadMasterKey(s MasterKeySource, logger *slog.Logger) (*MasterKey, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	switch {
	case len(s.Text) > 0:
		return ParseMasterKey(string(s.Text))
	case s.File != "":
		return readKeyFile(s.File, logger)
	}
	return nil, nil
}

// readKeyFile reads a master key file: the key's base64 text.
func readKeyFile(path string, logger *slog.Logger) (*MasterKey, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("master key file %s: not a regular file", path)
	}
	if info.Size() > 1024 {
		return nil, fmt.Errorf("master key file %s: %d bytes; want the base64 text of a 32-byte key", path, info.Size())
	}
	if info.Mode().Perm()&0o077 != 0 {
		logger.Warn("master key file is readable by other users; chmod 600 it", logkey.Path, path, logkey.Mode, info.Mode().Perm().String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	defer wipe(b)
	k, err := ParseMasterKey(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return k, nil
}

// DevMasterKey provides the master key in dev mode (no key configured):
// it reads the dev key file at path, or, when the file does not exist and
// dataExists is false, generates a new key into it (mode 0600). Either way
// it logs a warning. When the file is missing but dataExists says that
// data sealed under some master key is already stored, it refuses with
// ErrNoMasterKey and creates nothing: a new key would not open that data.
func DevMasterKey(path string, dataExists bool, logger *slog.Logger) (*MasterKey, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	exists, err := fileExists(path)
	if err != nil {
		return nil, fmt.Errorf("dev master key: %w", err)
	}
	if exists && !dataExists {
		// An empty file is what a creation cut short leaves (the process
		// killed between the file's creation and its write), and nothing
		// is sealed under any key yet. Refused, it would stop every start
		// until someone deleted it.
		if exists, err = removeEmpty(path); err != nil {
			return nil, fmt.Errorf("dev master key: %w", err)
		}
	}
	if exists {
		mk, err := readKeyFile(path, logger)
		if err != nil {
			return nil, err
		}
		logger.Warn("DEV MODE: secrets are encrypted under a master key stored in the data directory, next to what it protects; "+
			"set $"+MasterKeyEnv+" or --master-key-file in production", logkey.Path, path)
		return mk, nil
	}
	if dataExists {
		return nil, fmt.Errorf("%w: a keyring already exists (KV bucket "+KeyBucket+") but no master key is configured and the dev key file %s does not exist; "+
			"set $%s or --master-key-file to the key that sealed it, or restore the file; nothing was changed",
			ErrNoMasterKey, path, MasterKeyEnv)
	}
	mk, err := writeDevKeyFile(path)
	if err != nil {
		return nil, err
	}
	logger.Warn("DEV MODE: generated a new master key into the data directory (mode 0600); anyone who can read it can decrypt every secret. "+
		"Set $"+MasterKeyEnv+" or --master-key-file in production", logkey.Path, path)
	return mk, nil
}

// writeDevKeyFile creates path (mode 0600, never overwriting) holding a new
// master key, creating its directory (0700) if needed.
func writeDevKeyFile(path string) (*MasterKey, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("dev master key: %w", err)
	}
	k := GenerateMasterKey()
	text := k.Text()
	defer text.Wipe()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dev master key: %w", err)
	}
	_, werr := f.Write(text)
	if werr == nil {
		_, werr = f.Write([]byte{'\n'})
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return nil, fmt.Errorf("dev master key: %w", werr)
	}
	return k, nil
}

// removeEmpty removes path if it is an empty regular file, and reports
// whether it still exists.
func removeEmpty(path string) (bool, error) {
	info, err := os.Stat(path)
	if err != nil || !info.Mode().IsRegular() || info.Size() > 0 {
		return err == nil, err
	}
	return false, os.Remove(path)
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}
