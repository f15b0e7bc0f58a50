package event

// MaxQueryBytes bounds the body of a self-service query
// (POST /v1/self-service/exemption).
const MaxQueryBytes = 1024

// ParseExemptionQuery decodes and validates the body of a self-service
// exemption query, {"cpr": "DDMMYY-SSSS"}, with the rules of §5 of the
// contract: unknown fields are refused. The error is a *ValidationError
// naming the bad field; it never holds the CPR number, and a field name
// shaped like one is masked.
func ParseExemptionQuery(b []byte) (CPR, error) {
	v := &validator{}
	var w wireQuery
	if len(b) > MaxQueryBytes {
		v.add("", "the query is larger than 1024 bytes")
	} else if strictDecode(b, &w, "", v) {
		c := v.cpr("cpr", w.CPR)
		if err := v.err(); err != nil {
			return "", err
		}
		return c, nil
	}
	for i := range v.errs {
		v.errs[i].Field = MaskCPRLike(v.errs[i].Field)
	}
	return "", v.err()
}

// wireQuery is the wire form of an exemption query.
type wireQuery struct {
	CPR *string `json:"cpr"`
}
