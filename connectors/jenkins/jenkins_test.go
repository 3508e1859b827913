package jenkins

import (
	"net/http"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
)

// newShape is NOT a vendor payload: it is hand-written from the field list
// of the current Notification plugin's model (JobState, BuildState,
// ScmState, TestState @ jenkinsci/notification-plugin 720ea449; see
// shared/fixtures/SOURCES.md), to show the newer fields parse. No
// published example of it exists.
const newShape = `{
  "name": "payments-deploy",
  "display_name": "Payments deploy",
  "url": "job/payments-deploy/",
  "build": {
    "full_url": "https://ci.example.com/job/payments-deploy/412/",
    "number": 412,
    "queue_id": 90321,
    "timestamp": 1767600000000,
    "duration": 93000,
    "phase": "FINALIZED",
    "status": "SUCCESS",
    "url": "job/payments-deploy/412/",
    "display_name": "#412",
    "parameters": {"ENVIRONMENT": "production", "CHANGE": "CHG0030001"},
    "log": "Started by user alice\n",
    "notes": "",
    "test_summary": {"total": 10, "failed": 0, "passed": 10, "skipped": 0},
    "scm": {
      "url": "https://git.example.com/payments.git",
      "branch": "origin/main",
      "commit": "c6d86dc654b12425e706bcf951adfe5a8627a517",
      "changes": ["src/app.go"],
      "culprits": ["alice"]
    }
  }
}`

func TestNewRequiresSecret(t *testing.T) {
	hooktest.RunNewSecretCases(t, Type, New)
}

func TestVerify(t *testing.T) {
	w := hooktest.New(t, Type, New)
	hooktest.RunVerify(t, w, hooktest.SignatureOrBasicCases(hooktest.Read(t, "notification-plugin.job_completed.json")))
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"wiki example (old shape)", hooktest.Read(t, "notification-plugin.job_completed.json"), PhaseCompleted},
		{"newer plugin fields", []byte(newShape), PhaseFinalized},
		{"queued, no status yet", []byte(`{"name":"x","url":"job/x/","build":{"number":1,"phase":"QUEUED","url":"job/x/1/"}}`), PhaseQueued},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := Classify(hooktest.WithSecrets(hooktest.Header("Content-Type", "application/json;charset=UTF-8")), tc.body)
			hooktest.CheckClassify(t, in, err)
			if err != nil || in.Type != tc.want || in.DeliveryID != "" || in.Headers["Content-Type"] == "" {
				t.Fatalf("got %+v, %v", in, err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	old, err := Parse(hooktest.Read(t, "notification-plugin.job_completed.json"))
	if err != nil {
		t.Fatal(err)
	}
	if old.Name != "asgard" || old.Build.Number.String() != "18" || old.Build.Status != "SUCCESS" ||
		old.Build.SCM == nil || old.Build.SCM.Commit != "c6d86dc654b12425e706bcf951adfe5a8627a517" ||
		old.Build.Artifacts["asgard.war"]["archive"] == "" {
		t.Fatalf("old shape: %+v", old)
	}
	n, err := Parse([]byte(newShape))
	if err != nil {
		t.Fatal(err)
	}
	if n.DisplayName != "Payments deploy" || n.Build.QueueID.String() != "90321" || n.Build.Timestamp.String() != "1767600000000" ||
		string(n.Build.Parameters["ENVIRONMENT"]) != `"production"` || len(n.Build.SCM.Culprits) != 1 || len(n.Build.TestSummary) == 0 {
		t.Fatalf("new shape: %+v", n)
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name, body, want string
		parseOnly        bool
	}{
		{"no build", `{"name":"x","url":"job/x/"}`, "build: missing", false},
		{"build not object", `{"name":"x","build":"COMPLETED"}`, "build: must be an object, got a string", false},
		{"no phase", `{"name":"x","build":{"number":1}}`, "build.phase: missing", false},
		{"phase not string", `{"name":"x","build":{"phase":3}}`, "build.phase: must be a string", false},
		{"phase blank", `{"name":"x","build":{"phase":""}}`, "build.phase: is empty", false},
		{"array", `[]`, "not a JSON object", false},
		{"not json", `name=x`, "not valid JSON", false},
		// Go 1.27's encoding/json names the field ("build.number: must be a
		// number, got a string"), Go 1.26's does not ("body is not a
		// Notification plugin message: invalid number literal …").
		{"number not a number", `{"name":"x","build":{"phase":"STARTED","number":"abc"}}`, "number", true},
		{"scm wrong type", `{"name":"x","build":{"phase":"STARTED","scm":[1]}}`, "build.scm: must be an object", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, perr := Parse([]byte(tc.body))
			hooktest.RequireInvalid(t, perr, tc.want)
			_, cerr := Classify(http.Header{}, []byte(tc.body))
			if tc.parseOnly {
				// Classify reads only build.phase: an odd member elsewhere
				// does not stop the delivery at the door.
				if cerr != nil {
					t.Fatalf("Classify: %v", cerr)
				}
				return
			}
			hooktest.RequireInvalid(t, cerr, tc.want)
		})
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(hooktest.Read(f, "notification-plugin.job_completed.json"))
	f.Add([]byte(newShape))
	f.Add([]byte(`{"build":{"phase":null}}`))
	for _, b := range hooktest.FuzzSeeds(`{"build":%s}`, `{"build":{"phase":%s}}`) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := Classify(hooktest.WithSecrets(http.Header{}), body)
		hooktest.CheckClassify(t, in, err)
		n, perr := Parse(body)
		hooktest.CheckClassify(t, connectors.Inbound{Type: "x"}, perr)
		// Parse must never accept what Classify refuses, and must agree
		// on the phase.
		if perr == nil && (err != nil || n.Build.Phase != in.Type) {
			t.Fatalf("Parse ok (phase %q) but Classify gave %+v, %v", n.Build.Phase, in, err)
		}
	})
}

// TestClassifyCorners pins the corners where reading a body in place could
// part from decoding it with encoding/json: duplicate keys (the last wins),
// escapes and unicode in keys and values, and members of other JSON types.
func TestClassifyCorners(t *testing.T) {
	hooktest.RunClassify(t, Classify, []hooktest.ClassifyCase{
		{Name: "duplicate build, last wins", Body: `{"build":{"phase":"STARTED"},"build":{"phase":"COMPLETED"}}`, Want: PhaseCompleted, OK: true},
		{Name: "duplicate phase, last wins", Body: `{"build":{"phase":"STARTED","phase":"COMPLETED"}}`, Want: PhaseCompleted, OK: true},
		{Name: "duplicate build, last null", Body: `{"build":{"phase":"STARTED"},"build":null}`, Want: "build: missing"},
		{Name: "escaped keys", Body: `{"b\u0075ild":{"ph\u0061se":"QUEUED"}}`, Want: PhaseQueued, OK: true},
		{Name: "key case matters", Body: `{"Build":{"phase":"QUEUED"}}`, Want: "build: missing"},
		{Name: "dotted key is not a path", Body: `{"build.phase":"QUEUED"}`, Want: "build: missing"},
		{Name: "escapes in phase", Body: `{"build":{"phase":"ST\u0041RTED"}}`, Want: PhaseStarted, OK: true},
		{Name: "build array", Body: `{"build":[{"phase":"QUEUED"}]}`, Want: "build: must be an object, got an array"},
		{Name: "phase object", Body: `{"build":{"phase":{"a":1}}}`, Want: "build.phase: must be a string, got an object"},
		{Name: "phase bool", Body: `{"build":{"phase":false}}`, Want: "build.phase: must be a string, got a boolean"},
	})
}
