package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/version"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(vpoolv1alpha1.AddToScheme(scheme))
}

// options are the flags every command shares and what the commands talk to.
type options struct {
	kubeconfig string
	context    string
	namespace  string
	output     string

	in          io.Reader
	out, errOut io.Writer
	// now is the clock of ages and deadlines shown.
	now func() time.Time
	// poll is the interval of waits.
	poll time.Duration
	// connect makes the client and says the namespace to use; tests replace it.
	connect func(o *options) (client.Client, string, error)
}

func newOptions(in io.Reader, out, errOut io.Writer) *options {
	return &options{in: in, out: out, errOut: errOut, now: time.Now, poll: 500 * time.Millisecond, connect: connectKubeconfig}
}

// connectKubeconfig builds a client from --kubeconfig, $KUBECONFIG or
// ~/.kube/config (as kubectl does), with --context, and resolves the
// namespace: --namespace, else the context's, else "default".
func connectKubeconfig(o *options) (client.Client, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.context}
	overrides.Context.Namespace = o.namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.UserAgent = "kubectl-poolkeeper/" + version.Version
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, ns, nil
}

const rootLong = `kubectl poolkeeper: run poolkeeper pools (group ` + "vpool.poolkeeper.io" + `) as you would
run a XenServer pool with xe. The commands read the pool's objects and write
intents (spec fields, new objects) that the operator carries out; they never
write status.

  status [POOL]            the pool at a glance (xe pool-list, host-list, vm-list)
  host-forget HOST         forget a dead host (xe host-forget), after a plan and a confirmation
  designate-master HOST    make HOST the master (xe pool-designate-new-master, or
                           pool-emergency-transition-to-master + pool-recover-slaves)
  backup POOL              back the pool database up and wait (xe pool-dump-database)
  backup-verify BACKUP     download a backup, check its sha256, decrypt it with a key file
                           (what xe pool-restore-database dry-run=true checks)
  recover POOL             recover chosen VMs and vApps from backups (xe vm-recover,
                           appliance-recover): newest information per VM, plan first
  dr-test POOL             a DR test failover that starts nothing; --finish NAME cleans it up

Output is a table by default; -o json or -o yaml for scripts.`

func newRootCommand(o *options) *cobra.Command {
	root := &cobra.Command{
		Use:           "kubectl-poolkeeper",
		Short:         "Run poolkeeper pools with the xe-style intents",
		Long:          rootLong,
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Plugins are called as "kubectl poolkeeper"; say so in usage lines.
	root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl poolkeeper"}
	root.SetIn(o.in)
	root.SetOut(o.out)
	root.SetErr(o.errOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := root.PersistentFlags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
	f.StringVar(&o.context, "context", "", "The kubeconfig context to use.")
	f.StringVarP(&o.namespace, "namespace", "n", "", "The pool's namespace (default: the context's namespace).")
	f.StringVarP(&o.output, "output", "o", "table", "Output format: table, json or yaml.")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		switch o.output {
		case "table", "json", "yaml":
			return nil
		}
		return usageError{fmt.Errorf("--output %q: use table, json or yaml", o.output)}
	}
	root.AddCommand(newStatusCommand(o), newHostForgetCommand(o), newDesignateMasterCommand(o),
		newBackupCommand(o), newBackupVerifyCommand(o), newRecoverCommand(o), newDRTestCommand(o))
	return root
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("expected %s, got %d argument(s)", what, len(args))}
		}
		return nil
	}
}

// getPool reads a Pool by name.
func getPool(ctx context.Context, c client.Client, ns, name string) (*vpoolv1alpha1.Pool, error) {
	p := &vpoolv1alpha1.Pool{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		return nil, fmt.Errorf("reading Pool %s/%s: %w", ns, name, err)
	}
	return p, nil
}
