package outbox

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Postgres numeric limits that bound jsonb numbers (src/backend/utils/adt/numeric.c):
// at most 16383 digits after the decimal point (NUMERIC_DSCALE_MAX), a most
// significant digit at most 10^131071 (weight 32767 in base-10000 digits),
// and an exponent strictly inside ±INT_MAX/2.
const (
	pgNumericMaxDscale   = 16383
	pgNumericMaxWeight10 = 131071
	pgNumericMaxExponent = 1<<30 - 1 // INT_MAX / 2
)

// checkPayload accepts exactly the JSON texts that Postgres stores as jsonb,
// so that an invalid payload fails validation with a reason instead of
// failing the insert (which would abort the caller's transaction). Beyond
// JSON syntax, jsonb refuses \u0000 escapes, unpaired UTF-16 surrogate
// escapes, numbers outside numeric's range and very deep nesting.
func checkPayload(p json.RawMessage) *ValidationError {
	switch {
	case len(p) == 0:
		return invalid("payload", "is required")
	case len(p) > MaxPayloadBytes:
		return invalid("payload", "must be at most %d bytes, got %d", MaxPayloadBytes, len(p))
	case !utf8.Valid(p):
		return invalid("payload", "must be valid UTF-8")
	case !json.Valid(p):
		return invalid("payload", "is not valid JSON")
	}
	return scanJSONB(p)
}

// scanJSONB walks syntactically valid JSON and reports what jsonb refuses.
func scanJSONB(p []byte) *ValidationError {
	depth := 0
	for i := 0; i < len(p); {
		switch c := p[i]; {
		case c == '[' || c == '{':
			depth++
			if depth > MaxPayloadDepth {
				return invalid("payload", "nests deeper than %d levels", MaxPayloadDepth)
			}
			i++
		case c == ']' || c == '}':
			depth--
			i++
		case c == '"':
			n, err := scanString(p[i:])
			if err != nil {
				return err
			}
			i += n
		case c == '-' || (c >= '0' && c <= '9'):
			n, err := scanNumber(p[i:])
			if err != nil {
				return err
			}
			i += n
		default: // whitespace, ',', ':', and the letters of true, false, null
			i++
		}
	}
	return nil
}

// scanString checks the escapes of the string that starts at s[0] == '"' and
// returns its length including both quotes.
func scanString(s []byte) (int, *ValidationError) {
	pendingHigh := false // the previous escape was a high surrogate
	for i := 1; i < len(s); {
		switch s[i] {
		case '"':
			if pendingHigh {
				return 0, errSurrogate()
			}
			return i + 1, nil
		case '\\':
			if s[i+1] != 'u' {
				if pendingHigh {
					return 0, errSurrogate()
				}
				i += 2
				continue
			}
			code, _ := strconv.ParseUint(string(s[i+2:i+6]), 16, 16) // json.Valid checked the hex digits
			i += 6
			switch {
			case code == 0:
				return 0, invalid("payload", `contains the escape \u0000, which Postgres jsonb cannot store`)
			case code >= 0xD800 && code <= 0xDBFF:
				if pendingHigh {
					return 0, errSurrogate()
				}
				pendingHigh = true
			case code >= 0xDC00 && code <= 0xDFFF:
				if !pendingHigh {
					return 0, errSurrogate()
				}
				pendingHigh = false
			default:
				if pendingHigh {
					return 0, errSurrogate()
				}
			}
		default:
			if pendingHigh {
				return 0, errSurrogate()
			}
			i++
		}
	}
	return len(s), nil // unreachable for valid JSON
}

func errSurrogate() *ValidationError {
	return invalid("payload", "contains an unpaired UTF-16 surrogate escape, which Postgres jsonb refuses")
}

// scanNumber checks that the number at the start of s fits Postgres's numeric
// type and returns its length.
func scanNumber(s []byte) (int, *ValidationError) {
	i := 0
	if s[i] == '-' {
		i++
	}
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intDigits := s[intStart:i]
	var fracDigits []byte
	if i < len(s) && s[i] == '.' {
		i++
		fracStart := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		fracDigits = s[fracStart:i]
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		neg := false
		if s[i] == '+' || s[i] == '-' {
			neg = s[i] == '-'
			i++
		}
		expStart := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		digits := s[expStart:i]
		for len(digits) > 1 && digits[0] == '0' {
			digits = digits[1:]
		}
		if len(digits) > 10 {
			return 0, errNumericRange()
		}
		exp, _ = strconv.ParseInt(string(digits), 10, 64)
		if exp >= pgNumericMaxExponent {
			return 0, errNumericRange()
		}
		if neg {
			exp = -exp
		}
	}
	if max(int64(len(fracDigits))-exp, 0) > pgNumericMaxDscale {
		return 0, errNumericRange()
	}
	// Decimal weight of the most significant non-zero digit; zero has none.
	for j, d := range intDigits {
		if d != '0' {
			if int64(len(intDigits)-1-j)+exp > pgNumericMaxWeight10 {
				return 0, errNumericRange()
			}
			return i, nil
		}
	}
	for j, d := range fracDigits {
		if d != '0' {
			if int64(-(j+1))+exp > pgNumericMaxWeight10 {
				return 0, errNumericRange()
			}
			return i, nil
		}
	}
	return i, nil
}

func errNumericRange() *ValidationError {
	return invalid("payload", "contains a number outside the range of Postgres's numeric type (at most 131072 digits before the decimal point and 16383 after)")
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
