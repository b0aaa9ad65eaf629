/* The book simulator's requote walk, compiled (docs/simulator.md, "Speed").
 *
 * walk(mid, phase, jump_steps, n, tol_bps, tail_steps, gap_steps, interval, tolerance)
 *     -> (steps, price_driven)
 *
 *   mid         float64 buffer, n + markout steps: the log-mid in bp (market.Market.mid)
 *   phase       float64 buffer, >= n: the bot's timer phase per step, in [0, 1)
 *   jump_steps  int64 buffer, sorted: the steps below n whose mid jumped
 *   n           steps simulated
 *   tol_bps     the requote tolerance
 *   tail_steps  tail_age_ms / step_ms;  gap_steps  2 * min_interval_ms / step_ms
 *   interval, tolerance   the replace budget's GCRA, in steps (kernels.dyadic)
 *   steps       bytes: int64 decision step of each quote action
 *   price_driven  bytes: 1 where the mid (not the orders' age) triggered the action
 *
 * The same rule as the numpy path (quotes.trigger_table + quotes.urgent_steps +
 * kernels.walk_schedule, whose one-action-at-a-time form is kernels.walk_reference), evaluated
 * only at the steps the walk visits instead of at all n. Bit-identical to it: only IEEE
 * additions, subtractions, comparisons and truncations, in the same order (no multiplication, so
 * nothing a compiler could fuse); tests/unit/test_book_compiled.py compares the two.
 * The caller (quotes.requote_steps) passes contiguous arrays of the right dtypes (the buffers'
 * bytes are read as float64 / int64) and a market's phases, in [0, 1). Any input is memory-safe:
 * every index stays within the buffers, whatever the numbers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#define MAX_SCAN_STEPS 16 /* quotes.MAX_SCAN_STEPS */
/* The SHA-256 of this file when it was built (setup.py defines it): quotes._compiled sets a build
 * aside when the file has changed since (an editable checkout after `git pull`). */
#ifndef REQUOTE_SOURCE_SHA256
#define REQUOTE_SOURCE_SHA256 ""
#endif

/* Is `step` one of the sorted `jumps`? (binary search) */
static int is_jump(const int64_t *jumps, Py_ssize_t count, int64_t step)
{
    Py_ssize_t lo = 0, hi = count;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (jumps[mid] < step)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < count && jumps[lo] == step;
}

/* quotes.timer_steps at one step: floor(duration / step + phase), at least 1. The caller clamps
 * ``steps`` to the window; a NaN or an absurd phase (never a market's) gives 1 or the cap, not
 * an undefined conversion. */
static int64_t timer(double phase, double steps)
{
    double x = phase + steps;
    if (!(x >= 1.0))
        return 1;
    return x < 4e18 ? (int64_t)x : (int64_t)4e18;
}

/* quotes.exit_steps at one step: the first j in 1..width with the mid outside the band around
 * mid[a], width + 1 when it stayed inside. */
static int64_t exit_step(const double *mid, int64_t a, double tol, int64_t width)
{
    double hi = mid[a] + tol, lo = mid[a] - tol;
    for (int64_t j = 1; j <= width; j++) {
        double x = mid[a + j];
        if (!(x <= hi && x >= lo))
            return j;
    }
    return width + 1;
}

/* quotes.urgent_steps at one step: the next action is forced by a jump when the mid left the
 * band before the age refresh, at a jump step, and a jump lies within the scanned steps. */
static int urgent(const int64_t *jumps, Py_ssize_t count, int64_t a, int64_t exit_j,
                  int64_t tail, int64_t width)
{
    if (exit_j > tail || !is_jump(jumps, count, a + exit_j))
        return 0;
    if (exit_j <= width)
        return 1;
    for (int64_t j = 1; j <= width; j++)
        if (is_jump(jumps, count, a + j))
            return 1;
    return 0;
}

static PyObject *walk(PyObject *self, PyObject *args)
{
    Py_buffer mid_b, phase_b, jumps_b;
    Py_ssize_t n;
    double tol, tail_steps, gap_steps, interval, tolerance;
    if (!PyArg_ParseTuple(args, "y*y*y*nddddd", &mid_b, &phase_b, &jumps_b, &n, &tol,
                          &tail_steps, &gap_steps, &interval, &tolerance))
        return NULL;
    PyObject *result = NULL, *steps_o = NULL, *price_o = NULL;
    const double *mid = mid_b.buf, *phase = phase_b.buf;
    const int64_t *jumps = jumps_b.buf;
    Py_ssize_t mid_len = mid_b.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t jump_count = jumps_b.len / (Py_ssize_t)sizeof(int64_t);
    if (n < 1 || mid_len <= n || phase_b.len / (Py_ssize_t)sizeof(double) < n) {
        PyErr_SetString(PyExc_ValueError, "walk: need n >= 1, len(mid) > n, len(phase) >= n");
        goto done;
    }
    /* The scan width of quotes.trigger_table: min(max timer, len(mid) - n, 16). The largest
     * timer is the largest phase's (adding and truncating are monotonic). */
    double max_phase = -INFINITY; /* NaN phases are skipped: they time 1 step, the least */
    for (Py_ssize_t a = 0; a < n; a++)
        if (phase[a] > max_phase)
            max_phase = phase[a];
    int64_t width = timer(max_phase, tail_steps);
    if (mid_len - n < width)
        width = mid_len - n;
    if (width > MAX_SCAN_STEPS)
        width = MAX_SCAN_STEPS;

    steps_o = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    price_o = PyBytes_FromStringAndSize(NULL, n);
    if (steps_o == NULL || price_o == NULL)
        goto done;
    int64_t *steps = (int64_t *)PyBytes_AS_STRING(steps_o);
    char *price = PyBytes_AS_STRING(price_o);
    Py_ssize_t k = 0;
    double tat = 0.0;                        /* the budget's theoretical arrival time */
    double reserve = tolerance - interval;   /* an age refresh keeps one interval in hand */
    int64_t a = 0;
    while (a < n) {
        int64_t tail = timer(phase[a], tail_steps), gap = timer(phase[a], gap_steps);
        int64_t exit_j = exit_step(mid, a, tol, width);
        int by_price = exit_j <= tail;
        int64_t wait = exit_j < tail ? exit_j : tail;
        int64_t c = a + (gap > wait ? gap : wait);
        steps[k] = a;
        price[k] = (char)by_price;
        k++;
        double earliest = tat - (by_price ? tolerance : reserve);
        if (earliest > (double)c && !urgent(jumps, jump_count, a, exit_j, tail, width))
            /* past the window the walk ends either way (and a huge double has no int64) */
            c = earliest < (double)n ? (int64_t)ceil(earliest) : (int64_t)n;
        tat = (tat > (double)c ? tat : (double)c) + interval;
        a = c;
    }
    result = Py_BuildValue("(y#y#)", (char *)steps, k * (Py_ssize_t)sizeof(int64_t), price, k);
done:
    Py_XDECREF(steps_o);
    Py_XDECREF(price_o);
    PyBuffer_Release(&mid_b);
    PyBuffer_Release(&phase_b);
    PyBuffer_Release(&jumps_b);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(mid, phase, jump_steps, n, tol_bps, tail_steps, gap_steps, interval, tolerance)"
     " -> (steps int64 bytes, price_driven bool bytes): the requote walk (see the C source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_requote",
    "The book simulator's requote walk, compiled (docs/simulator.md, \"Speed\").", -1, methods,
};

PyMODINIT_FUNC PyInit__requote(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "SOURCE_SHA256", REQUOTE_SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
