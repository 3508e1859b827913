package pgconn

import (
	"maps"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
)

// TestTCPParams: libpq's socket parameters in the URL set the dialer's
// keepalives and user timeout (libpq's units, 0 for the system's value)
// and never reach the server's run-time parameters; a bad value is an
// error naming the parameter.
func TestTCPParams(t *testing.T) {
	def := DefaultTCP()
	tests := []struct {
		name, url string
		want      TCP
		wantErr   string
	}{
		{"none: the defaults", "postgres://u@h/db?sslmode=disable", def, ""},
		{"every one", "postgres://u@h/db?keepalives_idle=7&keepalives_interval=2&keepalives_count=3&tcp_user_timeout=4500",
			TCP{KeepAlive: net.KeepAliveConfig{Enable: true, Idle: 7 * time.Second, Interval: 2 * time.Second, Count: 3}, UserTimeout: 4500 * time.Millisecond}, ""},
		{"keepalives off", "postgres://u@h/db?keepalives=0",
			TCP{KeepAlive: net.KeepAliveConfig{Enable: false, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount}, UserTimeout: userTimeout}, ""},
		{"0: the system's", "host=h dbname=db keepalives_idle=0 keepalives_interval=0 keepalives_count=0 tcp_user_timeout=0",
			TCP{KeepAlive: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}, UserTimeout: 0}, ""},
		{"not a number", "postgres://u@h/db?tcp_user_timeout=30s", TCP{}, `tcp_user_timeout="30s": want a whole number of milliseconds`},
		{"negative", "host=h keepalives_idle=-5", TCP{}, `keepalives_idle="-5": want a whole number of seconds`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Config(tt.url, "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			before := maps.Clone(cfg.Runtime)
			got, rest, err := splitTCP(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("TCP = %+v, want %+v", got, tt.want)
			}
			for _, k := range tcpParams {
				if _, ok := rest.Runtime[k]; ok {
					t.Errorf("%s is still a run-time parameter for the server", k)
				}
			}
			if !maps.Equal(cfg.Runtime, before) {
				t.Error("splitTCP changed the caller's configuration")
			}
		})
	}
}

// TestWithoutParams: the DSN given to lib/pq's listener without the
// socket parameters parses, by lib/pq itself, to the same configuration
// as the original minus them — quoting, escapes and spacing included.
func TestWithoutParams(t *testing.T) {
	dsns := []string{
		"postgres://u:p%40ss@h:6543/db?sslmode=disable&tcp_user_timeout=1000&application_name=a%20b&keepalives_idle=3",
		"postgresql://h/db?keepalives=1",
		"postgres://u@h/db",
		"host=h port=6543 dbname=db tcp_user_timeout=1000 sslmode=disable",
		"host = h   keepalives_idle = 3 password='it\\'s \\'quoted\\' with spaces' dbname=db",
		`host=h password=back\ slash keepalives_count=2 application_name='x y'`,
		"keepalives=0",
		"  host=h  ",
	}
	for _, dsn := range dsns {
		t.Run(dsn, func(t *testing.T) {
			want, err := pq.NewConfig(dsn)
			if err != nil {
				t.Fatalf("lib/pq refuses the original: %v", err)
			}
			stripped, err := withoutParams(dsn, tcpParams)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pq.NewConfig(stripped)
			if err != nil {
				t.Fatalf("lib/pq refuses %q: %v", stripped, err)
			}
			for _, k := range tcpParams {
				delete(want.Runtime, k)
			}
			if len(want.Runtime) == 0 {
				want.Runtime = nil
			}
			if len(got.Runtime) == 0 {
				got.Runtime = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("withoutParams(%q) = %q:\n got %+v\nwant %+v", dsn, stripped, got, want)
			}
		})
	}
	for _, bad := range []string{"host", "host=h 'x", "host='unterminated"} {
		if _, err := withoutParams(bad, tcpParams); err == nil {
			t.Errorf("withoutParams(%q): no error", bad)
		}
	}
}
