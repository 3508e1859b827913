package app

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

// buildScheduler turns the config's report schedules into the scheduler.
// It always runs: it also applies the reports' retention.
func buildScheduler(cfg *config.Config, rec *service.Reconciler, db *store.DB, reg prometheus.Registerer, holder string, clock core.Clock, log *slog.Logger) (*service.Scheduler, error) {
	schedules := make([]service.ReportSchedule, 0, len(cfg.Reports))
	for i, r := range cfg.Reports {
		c, err := config.ParseCron(r.Cron)
		if err != nil {
			return nil, fmt.Errorf("reports[%d].cron: %w", i, err)
		}
		schedules = append(schedules, service.ReportSchedule{Name: r.Name, Cron: c, Period: r.Period.D(), Environment: r.Environment, WebhookURL: r.WebhookURL})
	}
	sch := service.NewScheduler(rec, db, schedules, cfg.Retention(), holder, clock, log)
	sch.OnMetrics = releaseGauges(reg)
	sch.VerdictsEvery = cfg.VerdictsEvery()
	sch.InboxRetention = cfg.Inbox.RetentionD()
	sch.MetricsEvery = cfg.MetricsEvery()
	return sch, nil
}

// releaseGauges registers tollgate_release_metric{environment, metric}:
// the release metrics of the trailing 30 days per environment. Both labels
// are bounded (the policy's environments, the fixed metric names below),
// unlike teams and services, which are not exported. The replica holding
// the reports lease refreshes them every release_metrics_refresh (1h),
// the first time a minute after start; on the others they are absent.
func releaseGauges(reg prometheus.Registerer) func(core.ReleaseMetrics) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_release_metric",
		Help: "Release metrics of the trailing 30 days per environment (docs/metrics.md): deployments, deployments_per_day, lead_time_median_hours, lead_time_p90_hours, change_failure_rate, emergency_ratio, mttr_mean_hours, gate_allow, gate_wait, gate_deny, gate_median_wait_minutes.",
	}, []string{"environment", "metric"})
	reg.MustRegister(g)
	return func(m core.ReleaseMetrics) {
		g.Reset()
		for _, gm := range m.Groups {
			set := func(name string, v *float64) {
				if v != nil {
					g.WithLabelValues(gm.Key, name).Set(*v)
				}
			}
			n := func(x int) *float64 { f := float64(x); return &f }
			set("deployments", n(gm.Deployments))
			set("deployments_per_day", &gm.DeploymentsPerDay)
			set("lead_time_median_hours", gm.LeadTimeHours.Median)
			set("lead_time_p90_hours", gm.LeadTimeHours.P90)
			set("change_failure_rate", gm.ChangeFailureRate)
			set("emergency_ratio", gm.EmergencyRatio)
			set("mttr_mean_hours", gm.MTTRHours.Mean)
			set("gate_allow", n(gm.Gate.Allow))
			set("gate_wait", n(gm.Gate.Wait))
			set("gate_deny", n(gm.Gate.Deny))
			set("gate_median_wait_minutes", gm.Gate.MedianWaitMinutes)
		}
	}
}
