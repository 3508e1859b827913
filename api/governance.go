package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
)

func (s *Server) placeHold(c *echo.Context) error {
	var in service.HoldInput
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	h, err := s.deps.Holds.Place(c.Request().Context(), in, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, h)
}

func (s *Server) listHolds(c *echo.Context) error {
	all, err := queryBool(c, "all")
	if err != nil {
		return err
	}
	holds, err := s.deps.Holds.List(c.Request().Context(), all)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"holds": holds})
}

func (s *Server) liftHold(c *echo.Context) error {
	h, err := s.deps.Holds.Lift(c.Request().Context(), c.Param("id"), actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, h)
}

func (s *Server) attachEvidence(c *echo.Context) error {
	var in service.EvidenceInput
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	e, err := s.deps.Evidence.Attach(c.Request().Context(), c.Param("id"), in, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, e)
}

func (s *Server) getRelease(c *echo.Context) error {
	r, err := s.deps.Evidence.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

// propose stores a change as a four-eyes proposal: 202 with the proposal.
func (s *Server) propose(c *echo.Context, kind, target string, src []byte) error {
	p, err := s.deps.Proposals.Propose(c.Request().Context(), kind, target, src, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{"proposal": p,
		"message": "four-eyes governance: the change takes effect when a second admin confirms it (POST /api/v1/proposals/" + p.ID + "/confirm)"})
}

func (s *Server) listProposals(c *echo.Context) error {
	ps, err := s.deps.Proposals.List(c.Request().Context(), c.QueryParam("status"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"proposals": ps})
}

func (s *Server) getProposal(c *echo.Context) error {
	p, err := s.deps.Proposals.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) confirmProposal(c *echo.Context) error {
	p, err := s.deps.Proposals.Confirm(c.Request().Context(), c.Param("id"), actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) withdrawProposal(c *echo.Context) error {
	p, err := s.deps.Proposals.Withdraw(c.Request().Context(), c.Param("id"), actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

// simulateRequest is POST /api/v1/policy/simulate's body. policy is the
// proposed document: a JSON object, or a string of YAML or JSON.
type simulateRequest struct {
	Policy      json.RawMessage `json:"policy"`
	From        time.Time       `json:"from"`
	To          time.Time       `json:"to"`
	Environment string          `json:"environment"`
}

// simulatePolicy streams the simulation as NDJSON: one line per release
// ({"release": …}) in time order, then {"summary": …}; an error after the
// first line ends the stream with {"error": …}.
func (s *Server) simulatePolicy(c *echo.Context) error {
	var r simulateRequest
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	src := []byte(r.Policy)
	var str string
	if len(src) > 0 && src[0] == '"' && json.Unmarshal(src, &str) == nil {
		src = []byte(str)
	}
	if len(bytes.TrimSpace(src)) == 0 || string(src) == "null" {
		return core.Invalid("policy", "the proposed policy is required")
	}
	in := service.SimulateInput{Policy: src, From: r.From, To: r.To, Environment: r.Environment}
	proposed, err := s.deps.Simulator.Prepare(c.Request().Context(), in)
	if err != nil {
		return err
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	sum, err := s.deps.Simulator.Run(c.Request().Context(), proposed, in, func(item service.SimulatedRelease) error {
		if err := enc.Encode(map[string]any{"release": item}); err != nil {
			return err
		}
		_ = rc.Flush()
		return nil
	})
	if err != nil {
		s.deps.Logger.ErrorContext(c.Request().Context(), "policy simulation failed", "err", err)
		return enc.Encode(map[string]any{"error": map[string]string{"code": string(core.KindOf(err)), "message": "the simulation stopped; see the server log"}})
	}
	return enc.Encode(map[string]any{"summary": sum})
}

// observeReport lists what enforcing would have blocked in observe mode:
// GET /api/v1/reports/observe?from=&to=&environment=.
func (s *Server) observeReport(c *echo.Context) error {
	var from, to time.Time
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := c.QueryParam(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return core.Invalid(p.name, "%q is not an RFC 3339 time", v)
			}
			*p.t = t
		}
	}
	rep, err := s.deps.Simulator.WouldHaveBlocked(c.Request().Context(), from, to, c.QueryParam("environment"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rep)
}
