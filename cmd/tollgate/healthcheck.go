package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

func newHealthcheckCmd(_ *cli) *cobra.Command {
	var hcURL string
	hc := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when the gateway's URL answers 200 (for container health checks)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, hcURL, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s answered %d", hcURL, resp.StatusCode)
			}
			return nil
		},
	}
	hc.Flags().StringVar(&hcURL, "url", "http://127.0.0.1:8080/readyz", "URL to probe")
	return hc
}
