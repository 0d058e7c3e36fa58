// goplugin-host: launches the plugin executable with HashiCorp's own go-plugin client, configured
// exactly the way Grafana configures it (pkg/plugins/backendplugin/grpcplugin/client.go), and
// checks the launch contract end to end: handshake line, dial, go-plugin's health ping,
// Diagnostics/CheckHealth, Diagnostics/CollectMetrics and the graceful stop (Kill -> Shutdown).
//
// Usage:
//
//	goplugin-host -plugin /path/to/gpx_cachingproxy -url http://127.0.0.1:8080 [-expect OK|ERROR|any]
//
// Exit status 0 when every step worked and the CheckHealth status matches -expect (default "any":
// an ERROR health status is a proper answer, not a failure of the protocol). On success one line
// is printed to stdout:
//
//	goplugin-host: handshake ok, ping ok, CheckHealth OK "<message>", metrics ok, kill 35ms, exit 0
//
// On failure a line starting with "goplugin-host: FAIL:" is printed to stdout and the status is 1
// (2 for usage errors, 3 when the watchdog fires). go-plugin's own log goes to stderr.
//
// Built in GOPATH mode; cachingproxy/pluginv2 is generated at test time from proto/backend.proto.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	pluginv2 "cachingproxy/pluginv2"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Grafana's handshake (grpcplugin.handshake in grafana).
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  2,
	MagicCookieKey:   "grafana_plugin_type",
	MagicCookieValue: "datasource",
}

// diagnosticsPlugin is the client half of Grafana's "diagnostics" plugin set entry.
type diagnosticsPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (diagnosticsPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return fmt.Errorf("host side only")
}

func (diagnosticsPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return pluginv2.NewDiagnosticsClient(c), nil
}

// logTee forwards go-plugin's log to stderr and keeps a copy so the host can find the
// "plugin process exited" record (it carries the wait status).
type logTee struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *logTee) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf.Write(p)
	t.mu.Unlock()
	return os.Stderr.Write(p)
}

func (t *logTee) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

var exitedRe = regexp.MustCompile(`plugin process exited:.*?(?:error="?([^"\n]*)"?)?\n`)

// The plugin client; fail() stops the plugin before exiting (os.Exit skips deferred calls).
var (
	client *plugin.Client
	killed bool
)

func fail(format string, a ...interface{}) {
	fmt.Printf("goplugin-host: FAIL: "+format+"\n", a...)
	if client != nil && !killed {
		client.Kill()
	}
	os.Exit(1)
}

func main() {
	pluginPath := flag.String("plugin", "", "path to the plugin executable")
	upstream := flag.String("url", "", "data source URL given to CheckHealth")
	expect := flag.String("expect", "any", "required CheckHealth status: OK, ERROR or any")
	timeout := flag.Duration("timeout", 45*time.Second, "watchdog for the whole run")
	flag.Parse()
	if *pluginPath == "" || *upstream == "" {
		fmt.Fprintln(os.Stderr, "usage: goplugin-host -plugin PATH -url URL [-expect OK|ERROR|any]")
		os.Exit(2)
	}
	switch *expect {
	case "OK", "ERROR", "any":
	default:
		fmt.Fprintln(os.Stderr, "-expect must be OK, ERROR or any")
		os.Exit(2)
	}

	watchdog := time.AfterFunc(*timeout, func() {
		fmt.Printf("goplugin-host: FAIL: watchdog: no result after %s\n", *timeout)
		if client != nil {
			// Make sure no plugin process outlives the host.
			go client.Kill()
			time.Sleep(3 * time.Second)
		}
		os.Exit(3)
	})
	defer watchdog.Stop()

	tee := &logTee{}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:   "goplugin-host",
		Level:  hclog.Debug,
		Output: tee,
	})

	client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          map[string]plugin.Plugin{"diagnostics": diagnosticsPlugin{}},
		Cmd:              exec.Command(*pluginPath),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
	})

	// 1. Handshake: start the process, read the line, dial the socket.
	rpcClient, err := client.Client()
	if err != nil {
		fail("handshake: %v", err)
	}
	if v := client.NegotiatedVersion(); v != 2 {
		fail("handshake: negotiated protocol version %d, Grafana needs 2", v)
	}
	if p := client.Protocol(); p != plugin.ProtocolGRPC {
		fail("handshake: protocol %q, want grpc", p)
	}

	// 2. Dispense and go-plugin's own health check (grpc.health.v1 for service "plugin").
	raw, err := rpcClient.Dispense("diagnostics")
	if err != nil {
		fail("dispense: %v", err)
	}
	diag, ok := raw.(pluginv2.DiagnosticsClient)
	if !ok {
		fail("dispense: got %T", raw)
	}
	if err := rpcClient.Ping(); err != nil {
		fail("ping: %v", err)
	}

	// 3. CheckHealth and CollectMetrics with a data source context.
	pctx := &pluginv2.PluginContext{
		OrgId:    1,
		PluginId: "seed-cachingproxy-datasource",
		User:     &pluginv2.User{Login: "admin", Name: "Admin", Email: "admin@example.com", Role: "Admin"},
		DataSourceInstanceSettings: &pluginv2.DataSourceInstanceSettings{
			Id:            1,
			Uid:           "gp1",
			Name:          "go-plugin host",
			Url:           *upstream,
			JsonData:      []byte("{}"),
			LastUpdatedMS: time.Now().UnixNano() / int64(time.Millisecond),
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	hres, err := diag.CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: pctx})
	cancel()
	if err != nil {
		fail("CheckHealth: %v", err)
	}
	status := hres.GetStatus().String()
	if *expect != "any" && status != *expect {
		fail("CheckHealth: status %s %q, expected %s", status, hres.GetMessage(), *expect)
	}
	if status == "UNKNOWN" {
		fail("CheckHealth: status UNKNOWN %q", hres.GetMessage())
	}

	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	mres, err := diag.CollectMetrics(ctx, &pluginv2.CollectMetricsRequest{PluginContext: pctx})
	cancel()
	if err != nil {
		fail("CollectMetrics: %v", err)
	}
	prom := string(mres.GetMetrics().GetPrometheus())
	if !strings.Contains(prom, "process_resident_memory_bytes") {
		fail("CollectMetrics: no process_resident_memory_bytes in %d bytes of metrics", len(prom))
	}

	// 4. Stop it the way Grafana does. go-plugin's Kill sends GRPCController/Shutdown, closes the
	// connection and waits up to 2 s for the process to exit before SIGKILLing it.
	start := time.Now()
	killed = true
	client.Kill()
	killTime := time.Since(start)
	if killTime >= 2*time.Second {
		fail("kill took %dms: the plugin did not exit on Shutdown and was SIGKILLed", killTime.Milliseconds())
	}
	if !client.Exited() {
		fail("after Kill (%dms) the plugin process has not exited", killTime.Milliseconds())
	}
	exitInfo := "exit 0"
	if m := exitedRe.FindStringSubmatch(tee.String()); m == nil {
		fail("no \"plugin process exited\" record in go-plugin's log")
	} else if m[1] != "" {
		fail("plugin process exited with %q (want status 0) after kill %dms", m[1], killTime.Milliseconds())
	}

	fmt.Printf("goplugin-host: handshake ok, ping ok, CheckHealth %s %q, metrics ok, kill %dms, %s\n",
		status, hres.GetMessage(), killTime.Milliseconds(), exitInfo)
}
