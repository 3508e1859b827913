package pgconn

import (
	"testing"
	"time"
)

func TestConfigSessionDefaults(t *testing.T) {
	tests := []struct {
		name, url, app string
		wantJIT        string
		wantApp        string
	}{
		{"url", "postgres://u@h:5432/db?sslmode=disable", "", "off", ""},
		{"url with an application", "postgres://u@h/db?sslmode=disable", "tollgate inbox writer", "off", "tollgate inbox writer"},
		{"the URL's jit wins", "postgres://u@h/db?sslmode=disable&jit=on", "", "on", ""},
		{"the URL's application name wins", "postgres://u@h/db?application_name=mine", "tollgate inbox writer", "off", "mine"},
		{"key=value string", "host=h dbname=db sslmode=disable", "", "off", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Config(tt.url, tt.app)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Runtime["jit"]; got != tt.wantJIT {
				t.Errorf("jit = %q, want %q", got, tt.wantJIT)
			}
			if tt.wantApp != "" && cfg.ApplicationName != tt.wantApp {
				t.Errorf("application_name = %q, want %q", cfg.ApplicationName, tt.wantApp)
			}
		})
	}
	if _, err := Config("postgres://u@h/db?sslmode=bogus", ""); err == nil {
		t.Error("a bad URL was accepted")
	}
}

func TestBounded(t *testing.T) {
	cfg, err := Config("postgres://u@h/db?sslmode=disable", "")
	if err != nil {
		t.Fatal(err)
	}
	Bounded(&cfg, 30*time.Second)
	if got := cfg.Runtime["statement_timeout"]; got != "30000" {
		t.Errorf("statement_timeout = %q, want 30000", got)
	}
	cfg, err = Config("postgres://u@h/db?sslmode=disable&statement_timeout=5000", "")
	if err != nil {
		t.Fatal(err)
	}
	Bounded(&cfg, 30*time.Second)
	if got := cfg.Runtime["statement_timeout"]; got != "5000" {
		t.Errorf("the URL's statement_timeout = %q, want 5000", got)
	}
}
