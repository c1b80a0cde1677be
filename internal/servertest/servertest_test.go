package servertest

import (
	"net/http"
	"strings"
	"testing"
)

var serverBinary string

func TestMain(m *testing.M) {
	Main(m, map[string]*string{ServerPackage: &serverBinary})
}

func TestStartStop(t *testing.T) {
	s := Start(t, serverBinary, "", Options{Args: []string{"--max-upload", "64KiB"}})
	resp, err := http.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz: %d", resp.StatusCode)
	}
	s.Stop()
	if !s.Cmd.ProcessState.Success() {
		t.Fatalf("after Stop: %v", s.Cmd.ProcessState)
	}
	s.Kill() // does nothing once the server has exited
}

// TestEnvAndKill also checks that Start reads the listening line of a JSON
// log, which the environment asks for.
func TestEnvAndKill(t *testing.T) {
	data := t.TempDir()
	s := Start(t, serverBinary, data, Options{Env: []string{"IMAGESTORE_LOG_FORMAT=json"}})
	if s.Data != data {
		t.Errorf("Data = %q, want %q", s.Data, data)
	}
	if !strings.Contains(s.Stderr.String(), `"msg":"listening"`) {
		t.Fatalf("no JSON listening line in the log:\n%s", s.Stderr)
	}
	s.Kill()
	if s.Cmd.ProcessState == nil || s.Cmd.ProcessState.Success() {
		t.Fatalf("after Kill: %v", s.Cmd.ProcessState)
	}
}

func TestBinaryName(t *testing.T) {
	for pkg, want := range map[string]string{
		ServerPackage:                 "imagestore",
		".":                           "servertest",
		"../servertest":               "servertest",
		"example.com/x/cmd/other-cli": "other-cli",
	} {
		if got := binaryName(pkg); got != want {
			t.Errorf("binaryName(%q) = %q, want %q", pkg, got, want)
		}
	}
}
