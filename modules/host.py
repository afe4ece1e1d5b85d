"""host: the network namespace vupy was started in."""
import os

from vupy.stack import KernelStack, StackError, StackModule, KERNEL_FAMILIES


class HostModule(StackModule):
    name = "host"
    description = "the network namespace vupy was started in"
    families = KERNEL_FAMILIES

    def create(self, source, options):
        if source or options:
            raise StackError("host: takes no source and no options")
        # vupy opens the host namespace before it makes any other, so the
        # thread's namespace here is the one vupy was started in.
        return KernelStack(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
