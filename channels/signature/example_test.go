package signature_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/digitalpost/postbud/channels/signature"
)

// Signing and verifying the Standard Webhooks test vector.
func ExampleVerify() {
	key, err := signature.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	id, ts, body := "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`)
	sig := signature.Sign(key, id, ts, body)
	fmt.Println(sig)

	h := http.Header{}
	h.Set(signature.HeaderID, id)
	h.Set(signature.HeaderTimestamp, "1614265330")
	h.Set(signature.HeaderSignature, sig)
	fmt.Println(signature.Verify([][]byte{key}, h, body, ts.Add(time.Minute), 0))
	fmt.Println(signature.Verify([][]byte{key}, h, body, ts.Add(time.Hour), 0) != nil)
	// Output:
	// v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
	// <nil>
	// true
}
