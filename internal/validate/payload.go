package validate

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

// Payload accepts exactly the JSON texts that Postgres stores as jsonb,
// so that an invalid payload fails validation with a reason instead of
// failing the insert (which would abort the caller's transaction). Beyond
// JSON syntax, jsonb refuses \u0000 escapes, unpaired UTF-16 surrogate
// escapes, numbers outside numeric's range and very deep nesting.
func Payload(p json.RawMessage) *Error {
	switch {
	case len(p) == 0:
		return Invalid("payload", "is required")
	case len(p) > MaxPayloadBytes:
		return Invalid("payload", "must be at most %d bytes, got %d", MaxPayloadBytes, len(p))
	case !utf8.Valid(p):
		return Invalid("payload", "must be valid UTF-8")
	case !json.Valid(p):
		return Invalid("payload", "is not valid JSON")
	}
	return scanJSONB(p)
}

// Sizes of Postgres's binary jsonb format (src/include/utils/jsonb.h and
// convertToJsonb in src/backend/utils/adt/jsonb_util.c): every array
// element, object key and object value has a 4-byte JEntry; a container has
// a 4-byte header and is aligned to 4 bytes; a numeric is aligned to 4 bytes
// and stored as a varlena numeric; strings are stored as their bytes; true,
// false and null take no data. A container's data may not exceed
// jsonbMaxContainerBytes (JENTRY_OFFLENMASK), or the insert fails with
// SQLSTATE 54000 ("total size of jsonb array elements exceeds the maximum")
// after the text was accepted.
const (
	jsonbEntryBytes        = 4
	jsonbHeaderBytes       = 4
	jsonbMaxPadding        = 3
	jsonbMaxContainerBytes = 1<<28 - 1
)

// scanJSONB walks syntactically valid JSON and reports what jsonb refuses,
// including containers whose binary form would exceed jsonb's limit. It
// computes each container's binary size bottom-up, counting the worst case
// for alignment, so its estimate is an upper bound: a payload it accepts
// fits.
func scanJSONB(p []byte) *Error {
	// sizes[d] is the binary size so far of the open container at depth d.
	sizes := make([]int64, 0, 16)
	add := func(n int64) {
		if len(sizes) > 0 {
			sizes[len(sizes)-1] += jsonbEntryBytes + n
		}
	}
	for i := 0; i < len(p); {
		switch c := p[i]; {
		case c == '[' || c == '{':
			if len(sizes) >= MaxPayloadDepth {
				return Invalid("payload", "nests deeper than %d levels", MaxPayloadDepth)
			}
			sizes = append(sizes, jsonbMaxPadding+jsonbHeaderBytes)
			i++
		case c == ']' || c == '}':
			size := sizes[len(sizes)-1]
			if size > jsonbMaxContainerBytes {
				return Invalid("payload", "holds an array or object of about %d bytes in Postgres's binary jsonb form, over jsonb's limit of %d; store large data in a table and send its key", size, jsonbMaxContainerBytes)
			}
			sizes = sizes[:len(sizes)-1]
			add(size)
			i++
		case c == '"':
			n, err := scanString(p[i:])
			if err != nil {
				return err
			}
			add(int64(n - 2)) // the decoded string is never longer than its escaped form
			i += n
		case c == '-' || (c >= '0' && c <= '9'):
			n, bytes, err := scanNumber(p[i:])
			if err != nil {
				return err
			}
			add(jsonbMaxPadding + bytes)
			i += n
		case c == 't' || c == 'n':
			add(0)
			i += 4
		case c == 'f':
			add(0)
			i += 5
		default: // whitespace, ',' and ':'
			i++
		}
	}
	return nil
}

// scanString checks the escapes of the string that starts at s[0] == '"' and
// returns its length including both quotes.
func scanString(s []byte) (int, *Error) {
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
				return 0, Invalid("payload", `contains the escape \u0000, which Postgres jsonb cannot store`)
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

func errSurrogate() *Error {
	return Invalid("payload", "contains an unpaired UTF-16 surrogate escape, which Postgres jsonb refuses")
}

// scanNumber checks that the number at the start of s fits Postgres's numeric
// type and returns its length and the size of its numeric datum.
func scanNumber(s []byte) (int, int64, *Error) {
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
			return 0, 0, errNumericRange()
		}
		exp, _ = strconv.ParseInt(string(digits), 10, 64)
		if exp >= pgNumericMaxExponent {
			return 0, 0, errNumericRange()
		}
		if neg {
			exp = -exp
		}
	}
	dscale := max(int64(len(fracDigits))-exp, 0)
	if dscale > pgNumericMaxDscale {
		return 0, 0, errNumericRange()
	}
	// Decimal powers of the most and least significant non-zero digits.
	hi, lo, nonZero := int64(0), int64(0), false
	for j, d := range intDigits {
		if d != '0' {
			p := int64(len(intDigits)-1-j) + exp
			if !nonZero {
				hi, nonZero = p, true
			}
			lo = p
		}
	}
	for j, d := range fracDigits {
		if d != '0' {
			p := int64(-(j + 1)) + exp
			if !nonZero {
				hi, nonZero = p, true
			}
			lo = p
		}
	}
	if nonZero && hi > pgNumericMaxWeight10 {
		return 0, 0, errNumericRange()
	}
	return i, numericBytes(hi, lo, nonZero, dscale), nil
}

// numericBytes is the size of a numeric datum (src/backend/utils/adt/numeric.c):
// a 4-byte varlena header, a 2-byte header in the short format (weight
// -64..63, display scale up to 63) or 4 bytes otherwise, and 2 bytes per
// base-10000 digit from the most to the least significant non-zero one.
func numericBytes(hi, lo int64, nonZero bool, dscale int64) int64 {
	var digits, weight int64
	if nonZero {
		weight = floorDiv4(hi)
		digits = weight - floorDiv4(lo) + 1
	}
	header := int64(4)
	if dscale <= 63 && weight >= -64 && weight <= 63 {
		header = 2
	}
	return 4 + header + 2*digits
}

func floorDiv4(p int64) int64 {
	if p >= 0 {
		return p / 4
	}
	return -((-p + 3) / 4)
}

func errNumericRange() *Error {
	return Invalid("payload", "contains a number outside the range of Postgres's numeric type (at most 131072 digits before the decimal point and 16383 after)")
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
