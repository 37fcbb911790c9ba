/* fastmath._core: dot products in C, plus (when built with FASTMATH_CUDA=1) a CUDA object. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "fastmath.h"

/* Added to every dot product; 0.0 keeps dot() exact. patches/fastmath/0001-dot-bias.patch edits these lines. */
#define FM_DOT_BIAS 0.0
#define FM_PATCH_LEVEL 0

#ifdef FM_WITH_CUDA
/* Defined in kernels.cu, compiled by nvcc. */
extern int fm_cuda_device_count(void);
#define FM_BACKEND "cuda"
#else
#define FM_BACKEND "cpu"
#endif

static PyObject *
fm_dot(PyObject *self, PyObject *args)
{
    PyObject *a, *b, *fa = NULL, *fb = NULL;
    Py_ssize_t n, i;
    double acc = 0.0;

    if (!PyArg_ParseTuple(args, "OO:dot", &a, &b))
        return NULL;
    fa = PySequence_Fast(a, "dot: first argument must be a sequence of numbers");
    if (fa == NULL)
        goto fail;
    fb = PySequence_Fast(b, "dot: second argument must be a sequence of numbers");
    if (fb == NULL)
        goto fail;
    n = PySequence_Fast_GET_SIZE(fa);
    if (n != PySequence_Fast_GET_SIZE(fb)) {
        PyErr_Format(PyExc_ValueError, "dot: lengths differ (%zd and %zd)", n, PySequence_Fast_GET_SIZE(fb));
        goto fail;
    }
    for (i = 0; i < n; i++) {
        double x = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fa, i));
        double y;
        if (x == -1.0 && PyErr_Occurred())
            goto fail;
        y = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fb, i));
        if (y == -1.0 && PyErr_Occurred())
            goto fail;
        acc += fm_scale(x) * fm_scale(y);
    }
    Py_DECREF(fa);
    Py_DECREF(fb);
    return PyFloat_FromDouble(acc + FM_DOT_BIAS);

fail:
    Py_XDECREF(fa);
    Py_XDECREF(fb);
    return NULL;
}

static PyObject *
fm_backend(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyUnicode_FromString(FM_BACKEND);
}

static PyObject *
fm_device_count(PyObject *self, PyObject *Py_UNUSED(ignored))
{
#ifdef FM_WITH_CUDA
    return PyLong_FromLong(fm_cuda_device_count());
#else
    return PyLong_FromLong(0);
#endif
}

static PyObject *
fm_patch_level(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(FM_PATCH_LEVEL);
}

static PyMethodDef fm_methods[] = {
    {"dot", fm_dot, METH_VARARGS, "dot(a, b) -> float: the dot product of two equal-length sequences."},
    {"backend", fm_backend, METH_NOARGS, "backend() -> str: 'cuda' if built with FASTMATH_CUDA=1, else 'cpu'."},
    {"cuda_device_count", fm_device_count, METH_NOARGS,
     "cuda_device_count() -> int: visible CUDA devices; -1 if the CUDA runtime fails (no driver or GPU), "
     "0 in a cpu build."},
    {"patch_level", fm_patch_level, METH_NOARGS, "patch_level() -> int: 0 for stock sources, 1 once patched."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fm_module = {
    PyModuleDef_HEAD_INIT, "fastmath._core", "C core of fastmath.", -1, fm_methods,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModule_Create(&fm_module);
}
