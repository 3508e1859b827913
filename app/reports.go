package app

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

// buildScheduler turns the config's report schedules into the scheduler.
// It always runs: it also applies the reports' retention.
func buildScheduler(cfg *config.Config, rec *service.Reconciler, db *store.DB, clock core.Clock, log *slog.Logger) (*service.Scheduler, error) {
	schedules := make([]service.ReportSchedule, 0, len(cfg.Reports))
	for i, r := range cfg.Reports {
		c, err := config.ParseCron(r.Cron)
		if err != nil {
			return nil, fmt.Errorf("reports[%d].cron: %w", i, err)
		}
		schedules = append(schedules, service.ReportSchedule{Name: r.Name, Cron: c, Period: r.Period.D(), Environment: r.Environment, WebhookURL: r.WebhookURL})
	}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString()[:8])
	return service.NewScheduler(rec, db, schedules, cfg.Retention(), holder, clock, log), nil
}
