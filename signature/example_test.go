package signature_test

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/triggerflow/triggerflow/signature"
)

func Example() {
	secret, _ := signature.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	body := []byte(`{"test": 2432232314}`)
	sent := time.Unix(1614265330, 0)

	// Sender side.
	sig, err := signature.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", sent, body, secret)
	if err != nil {
		panic(err)
	}
	h := http.Header{}
	h.Set(signature.HeaderID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(signature.HeaderTimestamp, strconv.FormatInt(sent.Unix(), 10))
	h.Set(signature.HeaderSignature, sig)

	// Receiver side, 30 s later.
	err = signature.Verify(h, body, []signature.Secret{secret}, 0, sent.Add(30*time.Second))
	fmt.Println(sig)
	fmt.Println("verified:", err == nil)
	fmt.Println("printed by mistake:", secret)
	// Output:
	// v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
	// verified: true
	// printed by mistake: whsec_…redacted
}
