package secattr

import "testing"

// BenchmarkStageBodyParse: one login body (form) and one token response
// (JSON) through the parser (scratch) and through the parser it replaced
// (ref, body_ref_test.go), side by side in one binary.
func BenchmarkStageBodyParse(b *testing.B) {
	bodies := []struct {
		name, ct, body string
	}{
		{"form", "application/x-www-form-urlencoded", "username=alice%40example.org&password=correct-horse&remember=1"},
		{"json", "application/json", `{"token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.sig","user":{"id":42,"email":"alice@example.org","roles":["user","admin"]},"expires_in":3600}`},
	}
	for _, tc := range bodies {
		h := hdr("Content-Type", tc.ct)
		body := []byte(tc.body)
		b.Run(tc.name+"/scratch", func(b *testing.B) {
			pool := newScratchPool()
			b.ReportAllocs()
			for b.Loop() {
				sc := pool.get(nil)
				f, _ := parseBody(sc, h, body)
				if f.len() == 0 {
					b.Fatal("no fields")
				}
				pool.put(sc)
			}
		})
		b.Run(tc.name+"/ref", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if f, _ := refParseBody(h, body); len(f) == 0 {
					b.Fatal("no fields")
				}
			}
		})
	}
}
