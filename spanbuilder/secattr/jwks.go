package secattr

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	maxJWKSFile    = 1 << 20
	maxVerifyTries = 8 // keys tried for a token without a matching kid
)

// verifyAlgs are the signature algorithms accepted for verification. The
// key type decides which apply (go-jose refuses an RSA key for HS256), so
// algorithm-confusion tokens fail.
var verifyAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
	jose.HS256, jose.HS384, jose.HS512,
}

// loadJWKS reads a JSON Web Key Set file (public keys, or "oct" keys for
// HS*). Errors name the file, never key material.
func loadJWKS(path string) (*jose.JSONWebKeySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jwt: jwks_file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJWKSFile+1))
	if err != nil {
		return nil, fmt.Errorf("jwt: read jwks_file %s: %w", path, err)
	}
	if len(b) > maxJWKSFile {
		return nil, fmt.Errorf("jwt: jwks_file %s is larger than %d bytes", path, maxJWKSFile)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		// json errors quote at most a type name or offset, not key bytes.
		return nil, fmt.Errorf("jwt: jwks_file %s is not a JSON Web Key Set: %w", path, err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("jwt: jwks_file %s holds no keys", path)
	}
	return &set, nil
}

// verify checks a compact JWS (already size-bounded by decodeToken) against
// the key set: the keys with the token's kid, or the first few keys when it
// names none.
func (e *Extractor) verify(raw string) bool {
	jws, err := jose.ParseSignedCompact(raw, verifyAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return false
	}
	keys := e.jwks.Keys
	if kid := jws.Signatures[0].Header.KeyID; kid != "" {
		keys = e.jwks.Key(kid)
	}
	for i, k := range keys {
		if i == maxVerifyTries {
			break
		}
		if _, err := jws.Verify(k.Key); err == nil {
			return true
		}
	}
	return false
}
