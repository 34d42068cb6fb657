package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// The dump's JSON is written and read one record at a time, so that a pool
// of tens of thousands of objects never exists as one JSON document in
// memory. The document is exactly what encoding/json makes of a Dump (field
// for field, in the order of the struct), with a newline after every value.

// jsonWriter writes the fields of one JSON object, remembering the first error.
type jsonWriter struct {
	w     io.Writer
	enc   *json.Encoder
	err   error
	comma bool
}

func (j *jsonWriter) raw(s string) {
	if j.err == nil {
		_, j.err = io.WriteString(j.w, s)
	}
}

func (j *jsonWriter) key(name string) {
	if j.comma {
		j.raw(",")
	}
	j.comma = true
	j.raw(`"` + name + `":`)
}

func (j *jsonWriter) value(v any) {
	if j.err == nil {
		j.err = j.enc.Encode(v)
	}
}

func (j *jsonWriter) field(name string, v any) {
	j.key(name)
	j.value(v)
}

// writeArray writes items as a JSON array, passing pointers to the encoder so
// that no record is copied.
func writeArray[T any](j *jsonWriter, name string, items []T, omitEmpty bool) {
	if omitEmpty && len(items) == 0 {
		return
	}
	j.key(name)
	if items == nil {
		j.raw("null")
		return
	}
	j.raw("[")
	for i := range items {
		if i > 0 {
			j.raw(",")
		}
		j.value(&items[i])
	}
	j.raw("]")
}

// writeDump writes d as JSON to w.
func writeDump(w io.Writer, d *Dump) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	j := &jsonWriter{w: w, enc: enc}
	j.raw("{")
	j.field("schemaVersion", d.SchemaVersion)
	j.field("takenAt", d.TakenAt)
	j.field("namespace", d.Namespace)
	j.field("pool", &d.Pool)
	writeArray(j, "hosts", d.Hosts, false)
	writeArray(j, "storageRepositories", d.StorageRepositories, false)
	writeArray(j, "virtualDisks", d.VirtualDisks, false)
	writeArray(j, "virtualMachines", d.VirtualMachines, false)
	// Left out when empty: a dump without vApps stays readable by a
	// poolkeeper older than them.
	writeArray(j, "virtualAppliances", d.VirtualAppliances, true)
	writeArray(j, "secrets", d.Secrets, true)
	writeArray(j, "omitted", d.Omitted, true)
	j.raw("}\n")
	return j.err
}

// readDump reads a dump written by writeDump (or json.Marshal) from r,
// decoding one record at a time. It refuses fields it does not know: a
// newer poolkeeper wrote them, and dropping them would lose data silently.
func readDump(r io.Reader) (*Dump, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	d := &Dump{}
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, decodeError("reading a field name", err)
		}
		name, _ := tok.(string)
		switch name {
		case "schemaVersion":
			err = dec.Decode(&d.SchemaVersion)
		case "takenAt":
			err = dec.Decode(&d.TakenAt)
		case "namespace":
			err = dec.Decode(&d.Namespace)
		case "pool":
			err = dec.Decode(&d.Pool)
		case "hosts":
			err = readArray(dec, &d.Hosts)
		case "storageRepositories":
			err = readArray(dec, &d.StorageRepositories)
		case "virtualDisks":
			err = readArray(dec, &d.VirtualDisks)
		case "virtualMachines":
			err = readArray(dec, &d.VirtualMachines)
		case "virtualAppliances":
			err = readArray(dec, &d.VirtualAppliances)
		case "secrets":
			err = readArray(dec, &d.Secrets)
		case "omitted":
			err = readArray(dec, &d.Omitted)
		default:
			return nil, fmt.Errorf("%w: the dump has a field %q this build does not know: restore it with a newer poolkeeper",
				ErrSchemaVersion, name)
		}
		if err != nil {
			return nil, decodeError("reading "+name, err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	// Reading to the end also checks the gzip trailer (CRC and length).
	if tok, err := dec.Token(); err != io.EOF {
		if err == nil {
			return nil, fmt.Errorf("%w: unexpected %v after the dump", ErrCorrupt, tok)
		}
		return nil, decodeError("reading the end of the dump", err)
	}
	return d, nil
}

// readArray decodes a JSON array (or null) into *out, element by element,
// in place.
func readArray[T any](dec *json.Decoder, out *[]T) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '[' {
		return &json.UnmarshalTypeError{Value: fmt.Sprint(tok), Type: reflect.TypeFor[[]T](), Offset: dec.InputOffset()}
	}
	for dec.More() {
		var zero T
		*out = append(*out, zero)
		if err := dec.Decode(&(*out)[len(*out)-1]); err != nil {
			return err
		}
	}
	_, err = dec.Token() // ']'
	return err
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return decodeError("reading the dump", err)
	}
	if delim, ok := tok.(json.Delim); !ok || delim != want {
		return fmt.Errorf("%w: expected %q in the dump's JSON, found %v", ErrCorrupt, want, tok)
	}
	return nil
}

// decodeError classifies an error met while decoding authenticated content:
// content of another shape than this build's schema (an unknown field, a
// value of another type) means a newer writer; anything else is damage.
func decodeError(what string, err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) || strings.HasPrefix(err.Error(), "json: unknown field") {
		return fmt.Errorf("%w: %s: %w: the dump does not match schema version %d of this build (written by a newer poolkeeper?)",
			ErrSchemaVersion, what, err, SchemaVersion)
	}
	return fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
}
