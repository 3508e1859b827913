package connectors

import "testing"

func TestPointsAt(t *testing.T) {
	tests := []struct {
		url  string
		want bool
	}{
		{"https://tollgate.example.com/webhooks/gh", true},
		{"https://tollgate.example.com/webhooks/gh/", true},
		{"https://tollgate.example.com/base/webhooks/gh?x=1", true},
		{"https://[MASKED]/webhooks/gh", true},
		{"https://tollgate.example.com/webhooks/gh2", false},
		{"https://tollgate.example.com/webhooks/other", false},
		{"https://tollgate.example.com/", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := PointsAt(tt.url, "gh"); got != tt.want {
			t.Errorf("PointsAt(%q) = %v, want %v", tt.url, got, tt.want)
		}
	}
}

func TestPreflightInputWants(t *testing.T) {
	in := PreflightInput{Events: []string{"Deployment Hook", "deployment_status"}}
	if !in.Wants("deployment hook") || !in.Wants("deployment_status") || in.Wants("push") {
		t.Error("Wants compares event names without regard to case, and only those listed")
	}
}
