package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/joho/godotenv"
	"github.com/redis/go-redis/v9"
)

// variables are the configuration variables the library reads.
var variables = []string{
	"REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB",
	"REDIS_CLUSTER_ADDRS", "REDIS_TLS_CA_FILE", "REDIS_PREFIX", "MEMORY_LOG_LEVEL",
}

// A setting is a configuration variable's value, and where it came from.
type setting struct {
	Name   string `json:"name"`
	Value  string `json:"value,omitempty"`
	Source string `json:"source"` // flag, environment, the .env file, or unset
}

// settings returns where each variable's value comes from, as the library
// reads them: flags win over the environment, which wins over the .env
// file. Passwords are not shown.
func (c *cli) settings() ([]setting, error) {
	var file map[string]string
	if c.opts.envFile != "" {
		var err error
		if file, err = godotenv.Read(c.opts.envFile); err != nil {
			return nil, fmt.Errorf("memory info: %w", err)
		}
	}
	flags := map[string]string{}
	if c.opts.url != "" {
		flags["REDIS_URL"] = "--url"
	}
	if c.opts.prefix.set {
		flags["REDIS_PREFIX"] = "--prefix"
	}
	out := make([]setting, len(variables))
	for i, name := range variables {
		s := setting{Name: name, Source: "unset"}
		switch {
		case flags[name] != "":
			s.Source = "flag " + flags[name]
			s.Value = map[string]string{"--url": c.opts.url, "--prefix": c.opts.prefix.value}[flags[name]]
		case os.Getenv(name) != "":
			s.Value, s.Source = os.Getenv(name), "environment"
		case file[name] != "":
			s.Value, s.Source = file[name], c.opts.envFile
		}
		if name == "REDIS_PASSWORD" && s.Value != "" {
			s.Value = "(set)"
		}
		out[i] = s
	}
	return out, nil
}

// info shows the server and its state, the prefix, the configuration and
// where each setting came from, and the namespace's keys and scopes.
func info(ctx context.Context, c *cli, _ []string) error {
	settings, err := c.settings()
	if err != nil {
		return err
	}
	report := struct {
		Server   string    `json:"server"`
		Redis    string    `json:"redis_version,omitempty"`
		Error    string    `json:"error,omitempty"`
		Prefix   string    `json:"prefix"`
		Keys     int       `json:"keys"`
		Names    int       `json:"names"`
		Scopes   []string  `json:"scopes"`
		Settings []setting `json:"settings"`
	}{Server: serverOf(c.mem.Client()), Prefix: c.mem.Prefix(), Settings: settings}
	bctx, cancel := c.bounded(ctx)
	defer cancel()
	if err := c.mem.Client().Ping(bctx).Err(); err != nil {
		report.Error = err.Error()
	} else {
		if v, err := c.mem.Client().Info(bctx, "server").Result(); err == nil {
			report.Redis = field(v, "redis_version")
		}
		n, err := c.census(ctx, false)
		if err != nil {
			return err
		}
		report.Keys, report.Names = n.total(), n.names
		if report.Scopes, err = c.mem.Scopes(ctx); err != nil {
			return err
		}
	}
	return c.report(report, func() {
		w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		server := report.Server
		switch {
		case report.Error != "":
			server += " (unreachable: " + report.Error + ")"
		case report.Redis != "":
			server += " (redis " + report.Redis + ")"
		}
		fmt.Fprintf(w, "server:\t%s\n", server)
		fmt.Fprintf(w, "prefix:\t%s\n", report.Prefix)
		if report.Error == "" {
			fmt.Fprintf(w, "keys:\t%d, %d of them names\n", report.Keys, report.Names)
			fmt.Fprintf(w, "scopes:\t%s\n", cmp.Or(strings.Join(report.Scopes, ", "), "none"))
		}
		fmt.Fprintln(w, "\nSETTING\tVALUE\tFROM")
		for _, s := range report.Settings {
			fmt.Fprintf(w, "%s\t%s\t%s\n", s.Name, cmp.Or(s.Value, "-"), s.Source)
		}
		w.Flush()
	})
}

// serverOf names the server client talks to.
func serverOf(client redis.UniversalClient) string {
	switch c := client.(type) {
	case *redis.Client:
		o := c.Options()
		return fmt.Sprintf("%s://%s/%d", o.Network, o.Addr, o.DB)
	case *redis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	}
	return fmt.Sprintf("%T", client)
}

// field returns the value of name in the text of an INFO reply.
func field(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// help shows the tool's usage, or a command's.
func help(_ context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		usage(c.stdout)
		return nil
	}
	cmd := lookup(args[0])
	if cmd == nil {
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	commandUsage(c.stdout, cmd)
	return nil
}
