package event

import "testing"

// BenchmarkParse measures one message.received event, the batch endpoint's
// cost a letter, decoded one-pass (Parse) and layered (each nested object
// apart, the way a malformed event takes):
//
//	go test -run '^$' -bench Parse -benchmem ./dispatcher/event
func BenchmarkParse(b *testing.B) {
	raw := fxEdited(MessageReceived, nil)
	for _, bc := range []struct {
		name    string
		layered bool
	}{{"one-pass", false}, {"layered", true}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parse(raw, &validator{layered: bc.layered}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
