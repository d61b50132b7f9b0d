/* Included twice: the include guard must make the second a no-op. */
#include "queue_listener.h"
#include "queue_listener.h"

#include <stdio.h>
#include <string.h>

int main(void) {
    if (strcmp(ql_status_str(12345), "unknown status") != 0) return 1;
    puts("header: OK");
    return 0;
}
