package api

import (
	"net/http"

	"github.com/labstack/echo/v5"

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
	all := c.QueryParam("all") == "true"
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
