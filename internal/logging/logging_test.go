package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

type valuer struct{}

func (valuer) LogValue() slog.Value {
	return slog.GroupValue(slog.Duration("lease", 2*time.Minute))
}

func TestDurationsAreText(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, slog.LevelInfo)
	log.Info("x", "timeout", 30*time.Second, slog.Duration("d", 1500*time.Microsecond),
		slog.Group("g", slog.Duration("inner", time.Hour)), "cfg", valuer{}, "n", 7)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	want := map[string]any{"timeout": "30s", "d": "1.5ms", "n": 7.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v (%s)", k, got[k], v, buf.Bytes())
		}
	}
	if g, _ := got["g"].(map[string]any); g["inner"] != "1h0m0s" {
		t.Errorf("group duration: %s", buf.Bytes())
	}
	if c, _ := got["cfg"].(map[string]any); c["lease"] != "2m0s" {
		t.Errorf("LogValuer duration: %s", buf.Bytes())
	}
}
