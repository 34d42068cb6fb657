// Package watchdog drives a host's watchdog: the timer outside the agent
// that resets the host when the agent stops petting it, so that a hung,
// crashed or cut-off agent's VMs are gone before the operator's safe time
// even though they do not die with the agent (a libvirt domain outlives it).
//
// Three kinds, chosen by the agent's --watchdog: a Linux watchdog device
// (/dev/watchdog by default: a hardware watchdog or softdog), the emulator
// of hack/watchdog-emulator ("unix:PATH", for hosts simulated on one
// machine), and "none" (the in-process self-fence only, for the sim driver
// or hosts fenced by Redfish or a person).
//
// # Timing
//
// PlanFor derives the watchdog's timeout W from the pool's heartbeat timeout
// T and says when the agent may pet: only while it holds the Lease, only
// until S + T - W + W/4 (S: the start of its last successful renewal), every
// W/4. The watchdog then expires between S + T (after the agent's own
// self-fence, the first line) and S + T + W/4, or S + T + 5W/4 at the latest
// when the timer was restarted once by no renewal (Linux does so when the
// watchdog file is closed without disarming: the agent died). The operator's
// safe time is L + T + T/2 >= S + T + T/2, which leaves T/2 - 5W/4 (3T/16
// with W = T/4) for the reset itself. A longer T takes effect on the
// watchdog only from the renewal that declared it in the Lease, a shorter
// one at once (both follow the agent's timeout in force).
//
// # The emulator's protocol
//
// A unix stream socket. The client sends one line (space-separated words,
// ending in '\n'); the emulator answers one:
//
//	BOOT                          -> OK <boot>
//	ARM <boot>                    -> OK <timeout-ms>
//	TIMEOUT <boot> <ms> [<until>] -> OK <timeout-ms>
//	PET <boot> [<until>]          -> OK
//	DISARM <boot>                 -> OK
//	STATUS                        -> OK boot=<boot> armed=<0|1> timeout=<ms> left=<ms> resets=<n>
//	POWERCYCLE                    -> OK <new boot>
//
// <boot> is the host's boot ID, a UUID that is new at every start of the
// emulated host and at every reset; a client learns it with BOOT and names it
// in every later line. ARM starts a stopped watchdog with its timeout (the
// default until TIMEOUT sets one) and leaves a running one's timer alone, as
// opening /dev/watchdog does. TIMEOUT sets the timeout and, when armed,
// restarts the timer (WDIOC_SETTIMEOUT); PET restarts it (WDIOC_KEEPALIVE);
// DISARM stops it (the magic close); POWERCYCLE resets the host at once (a
// test's power button). A connection closed without DISARM
// leaves the watchdog armed; unlike Linux, the emulator does not restart the
// timer then (it is stricter than the kernel the timing is argued for).
// <until> is the latest CLOCK_MONOTONIC time, in nanoseconds, at which the
// pet may take effect (client and emulator share one kernel).
//
// Errors:
//
//	RESET <boot>   the boot named is over: the host was reset since; <boot> is the current one
//	LATE           the pet arrived after <until>: ignored, the timer was not restarted
//	ERR <text>     anything else (an unknown command, PET while disarmed)
//
// When the timer expires the emulator resets the host: it takes a new boot
// ID (every later line naming the old one is answered RESET), disarms, puts
// the timeout back to the default, and kills every process of the old boot
// (its QEMU processes first) before it starts the next one.
package watchdog
