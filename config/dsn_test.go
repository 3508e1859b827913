package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMaskDatabaseURL: every credential form is masked in what is logged,
// and the rest stays readable.
func TestMaskDatabaseURL(t *testing.T) {
	tests := []struct {
		in, secret, keep string
	}{
		{"postgres://tollgate:Sup3rSecretPw@db:5432/tollgate?sslmode=require", "Sup3rSecretPw", "db:5432/tollgate?sslmode=require"},
		{"postgres://tollgate@db/tollgate?sslmode=disable&password=Sup3rSecretPw", "Sup3rSecretPw", "sslmode=disable"},
		{"postgresql://db/tollgate?user=u&PassWord=Sup3rSecretPw&sslpassword=KeyPassphrase1", "Sup3rSecretPw", "user=u"},
		{"postgresql://db/tollgate?sslpassword=KeyPassphrase1", "KeyPassphrase1", "postgresql://db/tollgate"},
		{"postgres://u:p%40ss@db/x?password=Sup3rSecretPw", "Sup3rSecretPw", "u:xxxxx@db"},
		{"host=db dbname=tollgate user=tg password=Sup3rSecretPw sslmode=require", "Sup3rSecretPw", "host=db dbname=tollgate user=tg password=**** sslmode=require"},
		{"host=db password='Sup3r Secret\\' Pw' dbname=x", "Secret", "host=db password=**** dbname=x"},
		{"host=db sslpassword = KeyPassphrase1", "KeyPassphrase1", "host=db"},
		{`host=db password=Sup3r\ Secret\ Pw dbname=x`, "Secret", "host=db password=**** dbname=x"},
		{"host=db tcp_user_timeout=10000 password='x'", "'x'", "host=db tcp_user_timeout=10000 password=****"},
		{"postgres://%zz:Sup3rSecretPw@db", "Sup3rSecretPw", "****"},
		{"sqlite:./data/t.db?synchronous=full", "", "sqlite:./data/t.db?synchronous=full"},
	}
	for _, tt := range tests {
		got := MaskDatabaseURL(tt.in)
		if tt.secret != "" && strings.Contains(got, tt.secret) {
			t.Errorf("MaskDatabaseURL(%q) = %q shows the secret", tt.in, got)
		}
		if !strings.Contains(got, tt.keep) {
			t.Errorf("MaskDatabaseURL(%q) = %q, want it to keep %q", tt.in, got, tt.keep)
		}
	}
}

// TestDatabaseURLForms: URLs, key=value strings and sqlite: with its one
// parameter are accepted; anything else is refused without echoing it.
func TestDatabaseURLForms(t *testing.T) {
	for _, ok := range []string{
		"", "sqlite:x.db", "sqlite:./data/x.db?synchronous=full", "sqlite:x.db?synchronous=NORMAL",
		"postgres://u:p@h/db", "postgresql://h/db?password=x",
		"host=db dbname=tollgate password='a b' sslmode=disable", "dbname=x",
		`host=db password=a\ b keepalives_idle=5`, "postgres://h/db?tcp_user_timeout=10000",
	} {
		if err := validateDatabaseURL(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"mysql://u:Sup3rSecretPw@h/db", "just-a-word", "host=db Sup3rSecretPw", "sqlite:x.db?synchronous=sometimes",
		"sqlite:x.db?cache=shared", "postgres://u:Sup3rSecretPw@h:port/db",
		"postgres://u:Sup3rSecretPw@h/db?tcp_user_timeout=30s", "host=h password=Sup3rSecretPw keepalives_idle=-1",
	} {
		err := validateDatabaseURL(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "Sup3rSecretPw") {
			t.Errorf("%q: error echoes the secret: %v", bad, err)
		}
	}
}

// TestConfigLogMasksQueryPassword: the start-up log line never shows a
// password given in the URL's query.
func TestConfigLogMasksQueryPassword(t *testing.T) {
	c, err := Parse(nil, env(map[string]string{"TOLLGATE_DATABASE_URL": "postgres://tg@db/tollgate?sslmode=disable&password=Sup3rSecretPw"}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("configuration loaded", "config", c)
	if strings.Contains(buf.String(), "Sup3rSecretPw") || !strings.Contains(buf.String(), "sslmode=disable") {
		t.Errorf("log: %s", buf.String())
	}
}

// TestAdminTokenFile: the admin token can come from a file (a Docker
// secret), trimmed; the value and its file together are refused.
func TestAdminTokenFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "admin_token")
	if err := os.WriteFile(f, []byte("from-a-secret-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(nil, env(map[string]string{"TOLLGATE_ADMIN_TOKEN_FILE": f}))
	if err != nil || c.AdminToken != "from-a-secret-file-0123456789" {
		t.Fatalf("from file: %v %q", err, c.AdminToken)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "config", c)
	if strings.Contains(buf.String(), "from-a-secret-file") {
		t.Errorf("log shows the token: %s", buf.String())
	}
	if c, err := Parse([]byte("admin_token_file: "+f+"\n"), env(nil)); err != nil || c.AdminToken != "from-a-secret-file-0123456789" {
		t.Errorf("config key: %v", err)
	}
	for name, vars := range map[string]map[string]string{
		"both":    {"TOLLGATE_ADMIN_TOKEN_FILE": f, "TOLLGATE_ADMIN_TOKEN": "another-admin-token-0123"},
		"missing": {"TOLLGATE_ADMIN_TOKEN_FILE": filepath.Join(dir, "nope")},
		"short":   {"TOLLGATE_ADMIN_TOKEN_FILE": writeTemp(t, dir, "short\n")},
		"empty":   {"TOLLGATE_ADMIN_TOKEN_FILE": writeTemp(t, dir, " \n")},
	} {
		if _, err := Parse(nil, env(vars)); err == nil || !strings.Contains(err.Error(), "admin_token") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func writeTemp(t *testing.T, dir, content string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "tok")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}
