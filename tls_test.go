package memory_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/redis-memory/memory"
	"github.com/redis-memory/memory/internal/redisserver"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the PEM of cert
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a certificate for 127.0.0.1 and localhost, signed by ca, for
// a server, or a cluster node, which is also a client of the other nodes, and
// its key, and returns their files.
func (ca *testCA) issue(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "redis"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, // nodes of a cluster are each other's clients
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600))
}

func TestTLS(t *testing.T) {
	clearEnv(t)
	t.Setenv("REDIS_TLS_CA_FILE", "")
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	otherCA := newTestCA(t, dir, "other-ca")
	certFile, keyFile := ca.issue(t, dir)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	srv := redisserver.StartTLS(t, redisserver.TLS{
		CertFile: certFile, KeyFile: keyFile, CAFile: ca.file,
		Client: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"},
	})
	port := strconv.Itoa(srv.Port)

	t.Run("rediss with the CA", func(t *testing.T) {
		for _, host := range []string{"127.0.0.1", "localhost"} {
			t.Setenv("REDIS_TLS_CA_FILE", ca.file)
			m, err := memory.New(ctx, memory.WithURL("rediss://"+net.JoinHostPort(host, port)))
			require.NoError(t, err, host)
			require.NoError(t, m.Set(ctx, "k", host))
			requireValue(t, m, "k", host)
			require.NoError(t, m.Close())
		}
	})

	t.Run("REDIS_HOST with the CA turns TLS on", func(t *testing.T) {
		t.Setenv("REDIS_TLS_CA_FILE", ca.file)
		t.Setenv("REDIS_HOST", "127.0.0.1")
		t.Setenv("REDIS_PORT", port)
		m, err := memory.New(ctx)
		require.NoError(t, err)
		require.NoError(t, m.Set(ctx, "k", 1))
		require.NoError(t, m.Close())
	})

	refusals := []struct {
		name, caFile, url, mentions string
	}{
		{"wrong CA", otherCA.file, "rediss://127.0.0.1:" + port, "certificate"},
		{"no CA: system roots", "", "rediss://127.0.0.1:" + port, "certificate"},
		{"plain client on the TLS port", "", "redis://127.0.0.1:" + port, "use rediss://"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("REDIS_TLS_CA_FILE", tt.caFile)
			m, err := memory.New(ctx, memory.WithURL(tt.url), memory.WithTimeout(time.Second))
			require.Error(t, err, "a TLS failure is a configuration error, not an outage")
			require.Nil(t, m)
			require.NotErrorIs(t, err, memory.ErrUnavailable)
			require.ErrorContains(t, err, tt.mentions)
			require.ErrorContains(t, err, "127.0.0.1:"+port)
		})
	}

	t.Run("CA file with a plain URL", func(t *testing.T) {
		t.Setenv("REDIS_TLS_CA_FILE", ca.file)
		_, err := memory.New(ctx, memory.WithURL("redis://127.0.0.1:"+port))
		require.ErrorContains(t, err, "use rediss://")
		require.ErrorContains(t, err, "REDIS_TLS_CA_FILE")
	})

	t.Run("CA file unreadable", func(t *testing.T) {
		t.Setenv("REDIS_TLS_CA_FILE", filepath.Join(dir, "missing.pem"))
		_, err := memory.New(ctx, memory.WithURL("rediss://127.0.0.1:"+port))
		require.ErrorIs(t, err, os.ErrNotExist)
		require.ErrorContains(t, err, "REDIS_TLS_CA_FILE")
		t.Setenv("REDIS_TLS_CA_FILE", certFile+"x")
		require.NoError(t, os.WriteFile(certFile+"x", []byte("not pem"), 0o600))
		_, err = memory.New(ctx, memory.WithURL("rediss://127.0.0.1:"+port))
		require.ErrorContains(t, err, "holds no PEM certificate")
	})
}

// TestTLSCluster reaches a Redis Cluster whose nodes speak TLS only through
// REDIS_CLUSTER_ADDRS and REDIS_TLS_CA_FILE.
func TestTLSCluster(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	certFile, keyFile := ca.issue(t, dir)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	cluster := redisserver.StartTLSCluster(t, 3, redisserver.TLS{
		CertFile: certFile, KeyFile: keyFile, CAFile: ca.file,
		Client: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"},
	})
	t.Setenv("REDIS_CLUSTER_ADDRS", strings.Join(cluster.Addrs, ","))
	t.Setenv("REDIS_TLS_CA_FILE", ca.file)
	m, err := memory.New(ctx, memory.WithPrefix("tls:"))
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	for i := range 30 {
		require.NoError(t, m.Set(ctx, "k"+strconv.Itoa(i), i))
	}
	requireValue(t, m, "k7", 7)
	names, err := m.Keys(ctx)
	require.NoError(t, err)
	require.Len(t, names, 30, "every master, over TLS")
	n, err := m.Clear(ctx)
	require.NoError(t, err)
	require.Equal(t, 30, n)
}
