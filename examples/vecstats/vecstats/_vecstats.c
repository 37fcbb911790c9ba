/* vecstats._vecstats: compiled against fastmath.h (found with fastmath.get_include() at build time). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "fastmath.h"

static PyObject *
vs_total(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "total: argument must be a sequence of numbers");
    Py_ssize_t n, i;
    double acc = 0.0;

    if (seq == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < n; i++) {
        double x = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (x == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        acc += fm_scale(x);
    }
    Py_DECREF(seq);
    return PyFloat_FromDouble(acc);
}

static PyObject *
vs_header_version(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(FASTMATH_HEADER_VERSION);
}

static PyMethodDef vs_methods[] = {
    {"total", vs_total, METH_O, "total(xs) -> float: the sum of fm_scale(x) over xs."},
    {"fastmath_header_version", vs_header_version, METH_NOARGS,
     "fastmath_header_version() -> int: FASTMATH_HEADER_VERSION of the fastmath.h this was compiled against."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef vs_module = {
    PyModuleDef_HEAD_INIT, "vecstats._vecstats", "C core of vecstats.", -1, vs_methods,
};

PyMODINIT_FUNC
PyInit__vecstats(void)
{
    return PyModule_Create(&vs_module);
}
