package main

import (
	"context"
	"fmt"
	"log/slog"
	"unicode/utf8"
)

// maxLogValue bounds every string a log line carries (the message and each
// attribute), so that no input, a hostile URL or file included, can make a
// log line larger than a few KiB.
const maxLogValue = 1 << 10

// boundedHandler cuts long strings in log records short.
type boundedHandler struct{ slog.Handler }

func (h boundedHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, boundString(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(boundAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, nr)
}

// yamlRedactingHandler drops what yaml errors quote of a file from string
// attributes: exporter-toolkit rereads --web.config.file on every request
// and logs its parse error, which would quote the file.
type yamlRedactingHandler struct{ slog.Handler }

func (h yamlRedactingHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if v := a.Value.Resolve(); v.Kind() == slog.KindString {
			a = slog.String(a.Key, redactYAML(v.String()))
		} else if err, ok := v.Any().(error); ok && v.Kind() == slog.KindAny {
			a = slog.String(a.Key, redactYAML(err.Error()))
		}
		nr.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, nr)
}

func (h yamlRedactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return yamlRedactingHandler{h.Handler.WithAttrs(as)}
}

func (h yamlRedactingHandler) WithGroup(name string) slog.Handler {
	return yamlRedactingHandler{h.Handler.WithGroup(name)}
}

func (h boundedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	b := make([]slog.Attr, len(as))
	for i, a := range as {
		b[i] = boundAttr(a)
	}
	return boundedHandler{h.Handler.WithAttrs(b)}
}

func (h boundedHandler) WithGroup(name string) slog.Handler {
	return boundedHandler{h.Handler.WithGroup(name)}
}

func boundAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if len(v.String()) > maxLogValue {
			return slog.String(a.Key, boundString(v.String()))
		}
	case slog.KindGroup:
		g := v.Group()
		b := make([]any, len(g))
		for i, x := range g {
			b[i] = boundAttr(x)
		}
		return slog.Group(a.Key, b...)
	case slog.KindAny:
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			return slog.Attr{Key: a.Key, Value: v}
		}
		if len(s) > maxLogValue {
			return slog.String(a.Key, boundString(s))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func boundString(s string) string {
	if len(s) <= maxLogValue {
		return s
	}
	cut := maxLogValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes in all)", s[:cut], len(s))
}
