package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// TestCheckIgnoresEmptyKeys: `--change "$CHANGE_KEY"` with the variable
// unset sends no change (the gate then answers by its policy, e.g.
// NO_CHANGE) rather than an empty key the server refuses with 400; the
// dropped flag is said on stderr. Non-empty keys go through untouched.
func TestCheckIgnoresEmptyKeys(t *testing.T) {
	tests := []struct {
		name          string
		args          []string
		changes, incs []string
		note          string
	}{
		{"empty change", []string{"--change", ""}, nil, nil, "empty --change was ignored"},
		{"blank change beside a real one", []string{"--change", " ", "--change", "CHG1"}, []string{"CHG1"}, nil, "empty --change was ignored"},
		{"empty incident", []string{"--change", "CHG1", "--incident", ""}, []string{"CHG1"}, nil, "empty --incident was ignored"},
		{"no empty flag", []string{"--change", "CHG1", "--incident", "INC1"}, []string{"CHG1"}, []string{"INC1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string]json.RawMessage
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				_, _ = w.Write([]byte(`{"decision":"deny","decision_id":"d1","release_id":"r1","reasons":[{"code":"NO_CHANGE","message":"no change"}]}`))
			}))
			defer srv.Close()
			args := append([]string{"check", "--url", srv.URL, "--token", "tok", "--service", "payments-api",
				"--environment", "production", "--version", "1.4.2"}, tt.args...)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, &stdout, &stderr, func(string) string { return "" })
			if code != exitDeny || !strings.Contains(stdout.String(), "NO_CHANGE") {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
			}
			for field, want := range map[string][]string{"changes": tt.changes, "incidents": tt.incs} {
				var keys []string
				if raw, ok := got[field]; ok {
					if err := json.Unmarshal(raw, &keys); err != nil {
						t.Fatal(err)
					}
				}
				if !reflect.DeepEqual(keys, want) {
					t.Errorf("%s sent %q, want %q", field, keys, want)
				}
			}
			if tt.note == "" && strings.Contains(stderr.String(), "ignored") || !strings.Contains(stderr.String(), tt.note) {
				t.Errorf("stderr %q, want the note %q", stderr.String(), tt.note)
			}
		})
	}
}
