package event

import (
	"errors"
	"strings"
	"testing"
)

func TestParseExemptionQuery(t *testing.T) {
	for _, body := range []string{`{"cpr":"010190-1234"}`, `{"cpr":"0101901234"}`, ` {"cpr": "010190-1234"} `} {
		c, err := ParseExemptionQuery([]byte(body))
		if err != nil || c.Digits() != "0101901234" {
			t.Errorf("ParseExemptionQuery(%s) = %v, want 0101901234", body, err)
		}
	}
	for _, tc := range []struct{ body, field, reason string }{
		{`{}`, "cpr", "required"},
		{`{"cpr":null}`, "cpr", "required"},
		{`{"cpr":"310290-1234"}`, "cpr", "does not hold a real birth date"},
		{`{"cpr":"0101901234x"}`, "cpr", "must be 10 digits, DDMMYY-SSSS"},
		{`{"cpr":101901234}`, "cpr", "must be a JSON string"},
		{`{"cpr":"010190-1234","name":"Anna"}`, "name", "unknown field"},
		{`{"0101901234":true}`, "[cpr]", "unknown field"},
		{`{"cpr":"010190-1234"} {}`, "", "must be a single JSON object"},
		{`["010190-1234"]`, "", "must be a JSON object"},
		{`{"cpr":"0101`, "", "malformed JSON: unexpected end"},
		{`{"cpr":"` + strings.Repeat("1", 1100) + `"}`, "", "the query is larger than 1024 bytes"},
	} {
		_, err := ParseExemptionQuery([]byte(tc.body))
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Errors) != 1 {
			t.Errorf("ParseExemptionQuery(%.40s): %v, want one field error", tc.body, err)
			continue
		}
		if ve.Errors[0].Field != tc.field || ve.Errors[0].Reason != tc.reason {
			t.Errorf("ParseExemptionQuery(%.40s): %+v, want %s: %s", tc.body, ve.Errors[0], tc.field, tc.reason)
		}
		if strings.Contains(err.Error(), "0101901234") || strings.Contains(err.Error(), "010190-1234") {
			t.Errorf("the error holds the CPR: %v", err)
		}
	}
}
