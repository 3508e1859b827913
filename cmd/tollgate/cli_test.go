package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

// TestTokenCreateAndAuditVerifyOffline: the CLI writes to the database the
// server uses, and `audit verify` checks the chain straight from it,
// naming the first bad row after a direct SQL edit.
func TestTokenCreateAndAuditVerifyOffline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.db")
	env := map[string]string{"TOLLGATE_DATABASE_URL": "sqlite:" + path}

	if code, out, stderr := runCLI(t, env, "migrate"); code != 0 || !strings.Contains(out, "applied") {
		t.Fatalf("migrate: %d %q %q", code, out, stderr)
	}
	for _, role := range []string{"ci", "auditor", "admin"} {
		code, out, stderr := runCLI(t, env, "token", "create", "--role", role, "--name", "cli-"+role)
		if code != 0 || !strings.HasPrefix(out, "tg_") {
			t.Fatalf("token create: %d %q %q", code, out, stderr)
		}
	}
	if code, _, stderr := runCLI(t, env, "token", "create", "--role", "root", "--name", "x"); code == 0 || !strings.Contains(stderr, "role") {
		t.Fatalf("bad role accepted: %d %q", code, stderr)
	}
	code, out, stderr := runCLI(t, env, "audit", "verify")
	if code != 0 || !strings.Contains(out, "3 rows verified") {
		t.Fatalf("audit verify: %d %q %q", code, out, stderr)
	}

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, env, "audit", "verify")
	if code != 1 || !strings.Contains(stderr, "BROKEN at row 2") || !strings.Contains(stderr, "(1 rows verified before it)") {
		t.Fatalf("tampered chain: %d %q", code, stderr)
	}
}

// TestAuditVerifyExpectHead: rows deleted from the chain's end pass a
// plain verify but not one held to the head kept outside.
func TestAuditVerifyExpectHead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.db")
	env := map[string]string{"TOLLGATE_DATABASE_URL": "sqlite:" + path}
	for _, role := range []string{"ci", "auditor", "admin"} {
		if code, _, stderr := runCLI(t, env, "token", "create", "--role", role, "--name", "cli-"+role); code != 0 {
			t.Fatalf("token create: %d %q", code, stderr)
		}
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seq, hash string
	if err := db.QueryRow(`SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash); err != nil {
		t.Fatal(err)
	}
	for _, anchor := range []string{hash, seq + ":" + hash, strings.ToUpper(hash)} {
		if code, out, stderr := runCLI(t, env, "audit", "verify", "--expect-head", anchor); code != 0 || !strings.Contains(out, "expected head included") {
			t.Fatalf("anchor %s: %d %q %q", anchor, code, out, stderr)
		}
	}
	for _, bad := range []string{"xyz", "x:" + hash, hash[:60]} {
		if code, _, stderr := runCLI(t, env, "audit", "verify", "--expect-head", bad); code == 0 || !strings.Contains(stderr, "--expect-head") {
			t.Fatalf("bad anchor %q: %d %q", bad, code, stderr)
		}
	}
	if _, err := db.Exec(`DELETE FROM audit_log WHERE seq = ` + seq); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, env, "audit", "verify"); code != 0 {
		t.Fatalf("a cut chain alone verifies: %d %q", code, stderr)
	}
	code, _, stderr := runCLI(t, env, "audit", "verify", "--expect-head", seq+":"+hash)
	if code != 1 || !strings.Contains(stderr, "ends at row 2, before the expected head at row 3") {
		t.Fatalf("cut chain against its head: %d %q", code, stderr)
	}
}

func TestMappingTestCommand(t *testing.T) {
	fixture := filepath.Join("..", "..", "connectors", "servicenow", "testdata", "sn_chg_rest.get_change.response.json")
	code, out, stderr := runCLI(t, nil, "mapping", "test", "servicenow-change", fixture)
	if code != 0 || !strings.Contains(out, `"CHG0000024"`) {
		t.Fatalf("mapping test: %d %q %q", code, out, stderr)
	}
	bad := filepath.Join("..", "..", "connectors", "servicenow", "testdata", "sn_chg_rest.get_change_nextstates.response.doc-verbatim.jsonc")
	if code, out, _ := runCLI(t, nil, "mapping", "test", "servicenow-change", bad); code != 1 || !strings.Contains(out, "not valid JSON") {
		t.Fatalf("invalid payload: %d %q", code, out)
	}
	if code, _, stderr := runCLI(t, nil, "mapping", "test", "no-such-profile", fixture); code == 0 || !strings.Contains(stderr, "no-such-profile") {
		t.Fatalf("unknown profile: %d %q", code, stderr)
	}
}

func TestConfigErrorsAreClear(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	if err := writeFile(cfg, "adress: x\nconnectors:\n  - {name: gh, type: github}\n"); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, nil, "--config", cfg, "migrate")
	if code != 1 || !strings.Contains(stderr, "adress") {
		t.Fatalf("bad config: %d %q", code, stderr)
	}
	if err := writeFile(cfg, "connectors:\n  - {name: gh, type: github}\n"); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, nil, "--config", cfg, "migrate")
	if code != 1 || !strings.Contains(stderr, "connectors[0].webhook_secret") {
		t.Fatalf("missing secret: %d %q", code, stderr)
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// TestLogDurationsAreText: the CLI's logs write durations as text ("12ms"),
// not integer nanoseconds (the migration lines carry one each).
func TestLogDurationsAreText(t *testing.T) {
	env := map[string]string{"TOLLGATE_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "t.db")}
	code, _, stderr := runCLI(t, env, "migrate")
	if code != 0 {
		t.Fatalf("migrate: %d %s", code, stderr)
	}
	if !regexp.MustCompile(`"duration":"[0-9.]+[µnm]?s"`).MatchString(stderr) || regexp.MustCompile(`"duration":[0-9]`).MatchString(stderr) {
		t.Errorf("durations not logged as text:\n%s", stderr)
	}
	if !strings.Contains(stderr, `"shutdown_timeout":"30s"`) {
		t.Errorf("configuration durations not text:\n%s", stderr)
	}
}

// TestTokenListAndRevoke: tokens are listed without secrets, revoked by
// id (audited as the CLI user), and errors are clear.
func TestTokenListAndRevoke(t *testing.T) {
	env := map[string]string{"TOLLGATE_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "t.db")}
	code, secret, stderr := runCLI(t, env, "token", "create", "--role", "ci", "--name", "payments-ci")
	if code != 0 {
		t.Fatalf("create: %d %s", code, stderr)
	}
	secret = strings.TrimSpace(secret)
	id := regexp.MustCompile(`created token (\S+)`).FindStringSubmatch(stderr)
	if id == nil {
		t.Fatalf("no id in %q", stderr)
	}
	code, out, stderr := runCLI(t, env, "token", "list")
	if code != 0 || !strings.Contains(out, id[1]) || !strings.Contains(out, "payments-ci") || !strings.HasPrefix(out, "ID ") || strings.Contains(out, secret) {
		t.Fatalf("list: %d %q %q", code, out, stderr)
	}
	if code, out, stderr = runCLI(t, env, "token", "revoke", id[1]); code != 0 || !strings.Contains(out, "revoked token "+id[1]) {
		t.Fatalf("revoke: %d %q %q", code, out, stderr)
	}
	code, out, _ = runCLI(t, env, "token", "list", "--json")
	var list struct {
		Items []struct {
			ID        string  `json:"id"`
			RevokedAt *string `json:"revoked_at"`
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list.Items) != 1 || list.Items[0].RevokedAt == nil {
		t.Fatalf("list --json after revoke: %d %q %v", code, out, err)
	}
	if code, _, stderr = runCLI(t, env, "token", "revoke", id[1]); code != 1 || !strings.Contains(stderr, "already revoked") {
		t.Errorf("revoke twice: %d %q", code, stderr)
	}
	if code, _, stderr = runCLI(t, env, "token", "revoke", "no-such-id"); code != 1 || !strings.Contains(stderr, "no-such-id") {
		t.Errorf("unknown id: %d %q", code, stderr)
	}
	if code, _, _ = runCLI(t, env, "token", "revoke"); code != 1 {
		t.Errorf("no id: %d", code)
	}
	if code, out, _ = runCLI(t, env, "audit", "verify"); code != 0 || !strings.Contains(out, "2 rows verified") {
		t.Errorf("audit after revoke: %d %q", code, out)
	}
}

// TestConfigLogMasksDatabasePassword: "configuration loaded" never shows a
// password given in the database URL's query (lib/pq reads it from there).
func TestConfigLogMasksDatabasePassword(t *testing.T) {
	url := testpg.NewDatabase(t) + "&password=Sup3rSecretPw"
	code, _, stderr := runCLI(t, map[string]string{"TOLLGATE_DATABASE_URL": url}, "migrate")
	if code != 0 || !strings.Contains(stderr, "configuration loaded") {
		t.Fatalf("migrate: %d %s", code, stderr)
	}
	if strings.Contains(stderr, "Sup3rSecretPw") {
		t.Errorf("password logged:\n%s", stderr)
	}
}

// `tollgate version` names the Go that built the binary; a build with the
// project's toolchain (as the tests are) carries no warning.
func TestVersionNamesItsGo(t *testing.T) {
	code, out, stderr := runCLI(t, nil, "version")
	if code != 0 || out != "tollgate dev ("+runtime.Version()+")\n" {
		t.Fatalf("version: %d %q", code, out)
	}
	if want := app.OlderGo(runtime.Version()) != ""; want != strings.Contains(stderr, "warning: built with") {
		t.Fatalf("stderr %q, warning expected: %v", stderr, want)
	}
}

// TestMigrateStatus: --status applies nothing, says where the schema
// stands, and exits 1 with the reason once the schema's floor is above
// this build.
func TestMigrateStatus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.db")
	env := map[string]string{"TOLLGATE_DATABASE_URL": "sqlite:" + path}
	code, out, stderr := runCLI(t, env, "migrate", "--status")
	if code != 0 || !strings.Contains(out, "at migration 0") || !strings.Contains(out, "pending") ||
		!strings.Contains(out, "once its pending migrations are applied") {
		t.Fatalf("migrate --status on a new store: %d %q %q", code, out, stderr)
	}
	if code, out, stderr = runCLI(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %d %q %q", code, out, stderr)
	}
	code, out, stderr = runCLI(t, env, "migrate", "--status")
	if code != 0 || !strings.Contains(out, "; 0 pending") || !strings.Contains(out, "builds that know migration") ||
		!strings.HasSuffix(out, "may run against it\n") {
		t.Fatalf("migrate --status after migrating: %d %q %q", code, out, stderr)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE schema_floor SET oldest_reader = 100000`); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runCLI(t, env, "migrate", "--status")
	if code != 1 || !strings.Contains(out, "may NOT run against it") || !strings.Contains(stderr, "upgrade it") {
		t.Errorf("migrate --status below the floor: %d %q %q, want exit 1 with the reason", code, out, stderr)
	}
	if code, _, stderr = runCLI(t, env, "migrate"); code != 1 || !strings.Contains(stderr, "needs a tollgate that knows migration 100000") {
		t.Errorf("migrate below the floor: %d %q, want it refused", code, stderr)
	}
}

// TestReplicasCommand: tollgate replicas lists, from the database, the
// replicas that recorded themselves (none before the schema has the
// table), as a table or as the API's JSON.
func TestReplicasCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.db")
	env := map[string]string{"TOLLGATE_DATABASE_URL": "sqlite:" + path}
	if code, out, stderr := runCLI(t, env, "replicas", "--json"); code != 0 || !strings.Contains(out, `"items": []`) {
		t.Fatalf("replicas on a new store: %d %q %q", code, out, stderr)
	}
	if code, _, stderr := runCLI(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %d %q", code, stderr)
	}
	db, err := store.Open(context.Background(), "sqlite:"+path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	skew := int64(-4)
	err = db.Heartbeat(context.Background(), core.Replica{ID: "host-a/7/abc", Version: "v9.9.9", SchemaKnown: 29, StartedAt: time.Now(), ClockSkewMS: &skew})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, env, "replicas")
	if code != 0 || !strings.Contains(out, "host-a/7/abc") || !strings.Contains(out, "v9.9.9") || !strings.Contains(out, "-4 ms") || !strings.Contains(out, "true") {
		t.Errorf("replicas: %d %q %q", code, out, stderr)
	}
}
