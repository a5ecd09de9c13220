package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSCert writes a self-signed certificate for 127.0.0.1 and localhost,
// and its key, as PEM files into a new temporary directory. It returns
// their paths and a pool that trusts the certificate.
func TLSCert(tb testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	tb.Helper()
	tmpl := certTemplate("flowvault test", x509.ExtKeyUsageServerAuth)
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	tmpl.IsCA = true
	tmpl.IPAddresses, tmpl.DNSNames = []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}
	cert, certFile, keyFile := writeCert(tb, tmpl, nil, nil)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// ClientCA writes a CA certificate as a PEM file into a new temporary
// directory, and returns its path and a function that issues client
// certificates it signs (PEM certificate and key files).
func ClientCA(tb testing.TB) (caFile string, issue func(name string) (certFile, keyFile string)) {
	tb.Helper()
	tmpl := certTemplate("flowvault test client CA", x509.ExtKeyUsageClientAuth)
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	tmpl.IsCA = true
	ca, caFile, caKeyFile := writeCert(tb, tmpl, nil, nil)
	caKey := readKey(tb, caKeyFile)
	return caFile, func(name string) (string, string) {
		tb.Helper()
		_, certFile, keyFile := writeCert(tb, certTemplate(name, x509.ExtKeyUsageClientAuth), ca, caKey)
		return certFile, keyFile
	}
}

func certTemplate(name string, usage x509.ExtKeyUsage) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
	}
}

// writeCert makes a new key and a certificate of tmpl for it, signed by
// parent's key (self-signed when parent is nil), and writes both as PEM
// files into a new temporary directory.
func writeCert(tb testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (cert *x509.Certificate, certFile, keyFile string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return cert, certFile, keyFile
}

func readKey(tb testing.TB, keyFile string) *ecdsa.PrivateKey {
	tb.Helper()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		tb.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		tb.Fatalf("%s holds no PEM block", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}
