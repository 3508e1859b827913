package gctune

import (
	"io"
	"log/slog"
	"testing"
)

func TestApply(t *testing.T) {
	for _, tc := range []struct {
		name         string
		env          map[string]string
		gogc, memlim bool
	}{
		{"defaults", nil, true, true},
		{"GOGC set", map[string]string{"GOGC": "200"}, false, true},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, true, false},
		{"both set", map[string]string{"GOGC": "off", "GOMEMLIMIT": "1GiB"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gotGC, gotLimit int64 = -1, -1
			apply(func(k string) string { return tc.env[k] }, slog.New(slog.NewTextHandler(io.Discard, nil)),
				func(p int) int { gotGC = int64(p); return 100 },
				func(b int64) int64 { gotLimit = b; return 0 })
			if tc.gogc != (gotGC == GOGC) || (!tc.gogc && gotGC != -1) {
				t.Errorf("GOGC: set %d, want set=%v", gotGC, tc.gogc)
			}
			if tc.memlim != (gotLimit == MemLimit) || (!tc.memlim && gotLimit != -1) {
				t.Errorf("memory limit: set %d, want set=%v", gotLimit, tc.memlim)
			}
		})
	}
}
